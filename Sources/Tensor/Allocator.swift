#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one allocator behind every tensor buffer: it counts live and peak bytes and reuses freed buffers.
///
/// Small buffers (under `mappingThreshold`) come from the C heap, rounded up to size classes
/// (four per power of two); a freed one goes to a cache for its class and serves the next request
/// of its class, or of up to half its size (charged in full). Large buffers are ranges of mapped
/// memory, rounded up to `granule`: a freed range joins the free ranges (merging with its free
/// neighbours), and a request is carved from the smallest free range that holds it, so memory that
/// is already resident serves requests of any smaller size instead of new pages being faulted in
/// and cleared (the sizes of a dense block's buffers grow by k channels per layer, so exact-size
/// reuse would mostly miss). A request that nothing cached can serve first gives cached memory back
/// to the system until live plus cached bytes fit within ``footprintLimitBytes``, the high-water
/// mark of live bytes plus a thirty-second of it, so the cache adds at most that to the peak
/// footprint. On Linux a large request that no single free range holds
/// is assembled from free ranges instead: their pages are moved (`mremap`) into its mapping, so
/// they neither go back to the system nor fault in afresh, and only the rest of the request is new
/// memory. Fresh pages cost a fault and a clearing each, far more in virtual machines that hand
/// freed memory back to their host. Cached memory is not live; ``cachedBytes`` reports it.
public enum Allocator {
  /// Bytes held by live tensor buffers now.
  public static var liveBytes: Int { state.withLock { $0.live } }

  /// The largest value ``liveBytes`` has reached since the last ``resetPeak()``.
  public static var peakBytes: Int { state.withLock { $0.peak } }

  /// The most bytes ever live at once (unlike ``peakBytes``, never reset): the largest working set,
  /// which ``footprintLimitBytes`` is measured from.
  public static var highWaterBytes: Int { state.withLock { $0.highWater } }

  /// The most bytes that live and cached buffers may hold together when a request needs fresh
  /// memory: ``highWaterBytes`` plus a thirty-second of it.
  ///
  /// The headroom is there because free ranges are cut by the order of the requests, and two
  /// threads interleave a step's requests differently each time: with none, a request that the
  /// last step's ranges served finds them cut otherwise, misses, and every step gives cached ranges
  /// back and faults fresh pages in for their like, and unmapping them interrupts the other core
  /// to flush its TLB. A little room lets the ranges settle into a layout that serves every step
  /// (docs/performance.md#allocator-headroom).
  public static var footprintLimitBytes: Int { state.withLock { $0.footprintLimit } }

  /// Bytes held in the cache of freed buffers, ready for reuse.
  public static var cachedBytes: Int { state.withLock { $0.cached } }

  /// How many requests no single cached buffer or free range could serve: fresh memory came from
  /// the system for them, or on Linux they were assembled from free ranges.
  public static var systemAllocations: Int { state.withLock { $0.misses } }

  /// The bytes of fresh memory taken from the system so far: what the cache could not serve, less
  /// what was moved into assembled requests. Each fresh page faults in and is cleared when first
  /// touched.
  public static var systemBytes: Int { state.withLock { $0.fresh } }

  /// The most bytes the cache keeps; a freed buffer past this limit goes back to the system.
  public static var cacheLimitBytes: Int {
    get { state.withLock { $0.cacheLimit } }
    set { state.withLock { $0.cacheLimit = newValue } }
  }

  /// Sets the peak to the current live bytes, so the next reading of ``peakBytes`` covers what
  /// happens from now on.
  public static func resetPeak() { state.withLock { $0.peak = $0.live } }

  /// The largest value ``liveBytes`` has reached since the last ``resetIntervalPeak()``: a second
  /// peak for measuring a part of a step (the checkpoint planner's profile) without disturbing
  /// ``peakBytes``.
  public static var intervalPeakBytes: Int { state.withLock { $0.intervalPeak } }

  /// Sets the interval peak to the current live bytes.
  public static func resetIntervalPeak() { state.withLock { $0.intervalPeak = $0.live } }

  /// Returns every cached buffer to the system.
  public static func releaseCache() {
    let taken = state.withLock { s in s.evict(atLeast: s.cached) }
    for piece in taken { systemFree(piece) }
  }

  /// Buffers of 128 KiB or more are ranges of memory mapped directly, so that what is given back
  /// leaves the resident set at once (the C heap would keep it), and so that any free range serves
  /// any smaller request, charged exactly. (The C library's own threshold for mapping a buffer
  /// starts at this size.)
  static let mappingThreshold = 1 << 17

  /// The unit that mapped ranges are measured in: the system's page.
  static let granule = Int(sysconf(Int32(_SC_PAGESIZE)))

  /// The bytes a request of `bytes` bytes is charged: its size class if small, else whole granules.
  static func sizeClass(_ bytes: Int) -> Int {
    if bytes <= 64 { return 64 }
    if bytes >= mappingThreshold { return (bytes + granule - 1) / granule * granule }
    let top = Int.bitWidth - (bytes - 1).leadingZeroBitCount  // 2^top >= bytes
    let step = 1 << max(top - 3, 6)
    return (bytes + step - 1) / step * step
  }

  /// Returns a 64-byte-aligned buffer of at least `bytes` bytes and the size it is charged.
  static func allocate(_ bytes: Int) -> (UnsafeMutableRawPointer, Int) {
    let (pointer, size) = obtain(bytes)
    #if DEBUG
    // Debug builds (the test suite) fill every buffer with NaN bytes, so a kernel that reads an
    // element it never wrote produces NaN instead of a plausible stale value.
    pointer.initializeMemory(as: UInt8.self, repeating: 0xFF, count: size)
    #endif
    return (pointer, size)
  }

  private static func obtain(_ bytes: Int) -> (UnsafeMutableRawPointer, Int) {
    var size = sizeClass(bytes)
    var evicted: [Piece] = [], moved: [Piece] = []
    let reused: UnsafeMutableRawPointer? = state.withLock { s in
      let found = size >= mappingThreshold ? s.mapped.take(size).map { ($0, size) } : s.takeSmall(size)
      if let (_, charged) = found { size = charged }
      s.live += size
      s.peak = max(s.peak, s.live)
      s.intervalPeak = max(s.intervalPeak, s.live)
      s.highWater = max(s.highWater, s.live)
      guard let (p, _) = found else {
        s.misses += 1
        if size >= hugePage && movesPages {
          // The smallest free ranges first: they are the ones too short to serve requests.
          moved = s.mapped.removeAligned(atMost: size, alignment: hugePage).map { Piece(pointer: $0, size: $1, mapped: true) }
        }
        let movedBytes = moved.reduce(0) { $0 + $1.size }
        s.cached -= movedBytes
        evicted = s.evict(atLeast: s.live + s.cached - s.footprintLimit)
        s.fresh += size - movedBytes
        return nil
      }
      s.cached -= size
      return p
    }
    for piece in evicted { systemFree(piece) }
    if let reused { return (reused, size) }
    return (moved.isEmpty ? systemAllocate(size) : assembled(size, from: moved), size)
  }

  /// Takes back a buffer from ``allocate(_:)``; it goes to the cache while the cache has room.
  static func release(_ pointer: UnsafeMutableRawPointer, sizeClass size: Int) {
    let keep = state.withLock { s -> Bool in
      s.live -= size
      guard s.cached + size <= s.cacheLimit else { return false }
      if size >= mappingThreshold {
        s.mapped.insert(pointer, size)
      } else {
        s.free[size, default: []].append(pointer)
      }
      s.cached += size
      return true
    }
    if !keep { systemFree(Piece(pointer: pointer, size: size, mapped: size >= mappingThreshold)) }
  }

  static func systemAllocate(_ size: Int) -> UnsafeMutableRawPointer {
    if size >= mappingThreshold {
      let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
      if let p, p != MAP_FAILED {
        // Transparent huge pages where the system allows them: a fresh mapping then faults in
        // 2 MiB at a time, not 4 KiB.
        if size >= 2 * hugePage { _ = madvise(p, size, MADV_HUGEPAGE) }
        return p
      }
    } else {
      var raw: UnsafeMutableRawPointer?
      if posix_memalign(&raw, 64, size) == 0, let raw { return raw }
    }
    fatalError("Allocator: out of memory allocating \(size) bytes (\(liveBytes) bytes live)")
  }

  /// Memory given back to the system: a heap buffer, or a range of mapped memory (which may span
  /// several original mappings, since free ranges merge across them).
  struct Piece {
    let pointer: UnsafeMutableRawPointer
    let size: Int
    let mapped: Bool
  }

  private static func systemFree(_ piece: Piece) {
    if piece.mapped { munmap(piece.pointer, piece.size) } else { free(piece.pointer) }
  }

  struct State {
    var live = 0
    var peak = 0
    var intervalPeak = 0
    var cached = 0
    var misses = 0
    var fresh = 0
    var cacheLimit = 2 << 30
    /// The most live bytes ever (``peak`` without resets).
    var highWater = 0
    /// What live plus cached bytes are kept within when fresh memory is needed.
    var footprintLimit: Int { highWater + highWater / 32 }
    /// Cached heap buffers by size class.
    var free: [Int: [UnsafeMutableRawPointer]] = [:]
    /// Cached mapped memory.
    var mapped = FreeRanges()

    /// A cached heap buffer of class `size`, else the smallest cached class up to twice the size:
    /// buffers of neighbouring sizes then serve each other instead of piling up in the cache.
    mutating func takeSmall(_ size: Int) -> (UnsafeMutableRawPointer, Int)? {
      guard let chosen = free[size] != nil ? size : free.keys.filter({ $0 > size && $0 <= 2 * size }).min(),
        let p = free[chosen]?.popLast()
      else { return nil }
      if free[chosen]!.isEmpty { free[chosen] = nil }
      return (p, chosen)
    }

    /// Takes cached memory worth at least `bytes` out of the cache (all of it if it holds less),
    /// before a request that the cache cannot serve is allocated: live plus cached bytes, the
    /// resident footprint, then grows only when live bytes do. Heap buffers go first, largest
    /// class first, then mapped ranges from the smallest (a large range serves the most requests).
    mutating func evict(atLeast bytes: Int) -> [Piece] {
      var taken: [Piece] = [], total = 0
      guard bytes > 0 else { return taken }
      for size in free.keys.sorted(by: >) {
        while total < bytes, let p = free[size]?.popLast() {
          taken.append(Piece(pointer: p, size: size, mapped: false))
          total += size
        }
        if free[size]?.isEmpty == true { free[size] = nil }
        if total >= bytes { break }
      }
      if total < bytes {
        for (p, size) in mapped.remove(atLeast: bytes - total, granule: granule) {
          taken.append(Piece(pointer: p, size: size, mapped: true))
          total += size
        }
      }
      cached -= total
      return taken
    }
  }

  static let state = Locked(State())
}

/// A value guarded by a pthread mutex.
final class Locked<Value>: @unchecked Sendable {
  private var value: Value
  private var mutex = pthread_mutex_t()

  init(_ value: Value) {
    self.value = value
    pthread_mutex_init(&mutex, nil)
  }

  deinit { pthread_mutex_destroy(&mutex) }

  func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
    pthread_mutex_lock(&mutex)
    defer { pthread_mutex_unlock(&mutex) }
    return try body(&value)
  }
}
