#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one allocator behind every tensor buffer: it counts live and peak bytes and reuses freed buffers.
///
/// Sizes are rounded up to size classes (four per power of two), and a freed buffer goes to a cache
/// for its class, so the recomputation in a checkpointed backward pass reuses memory instead of
/// faulting in fresh pages. A request takes a cached buffer of its class or, failing that, the
/// smallest cached one up to twice its size (and is charged for it). A request the cache cannot
/// serve first evicts as many cached bytes as it needs, so the cache never adds to the peak
/// footprint. Cached buffers are not live; ``cachedBytes`` reports them.
public enum Allocator {
  /// Bytes held by live tensor buffers now.
  public static var liveBytes: Int { state.withLock { $0.live } }

  /// The largest value ``liveBytes`` has reached since the last ``resetPeak()``.
  public static var peakBytes: Int { state.withLock { $0.peak } }

  /// The most bytes ever live at once (unlike ``peakBytes``, never reset). When a request finds no
  /// cached buffer to reuse, the cache gives up buffers until live plus cached bytes are back within
  /// this mark, so caching never raises the resident footprint above the largest live working set.
  public static var highWaterBytes: Int { state.withLock { $0.highWater } }

  /// Bytes held in the cache of freed buffers, ready for reuse.
  public static var cachedBytes: Int { state.withLock { $0.cached } }

  /// The most bytes the cache keeps; a freed buffer past this limit goes back to the system.
  public static var cacheLimitBytes: Int {
    get { state.withLock { $0.cacheLimit } }
    set { state.withLock { $0.cacheLimit = newValue } }
  }

  /// Sets the peak to the current live bytes, so the next reading of ``peakBytes`` covers what
  /// happens from now on.
  public static func resetPeak() { state.withLock { $0.peak = $0.live } }

  /// Returns every cached buffer to the system.
  public static func releaseCache() {
    state.withLock { s in
      for (size, list) in s.free { for p in list { systemFree(p, size) } }
      s.free.removeAll()
      s.cached = 0
    }
  }

  /// The size class that a request of `bytes` bytes is rounded up to.
  static func sizeClass(_ bytes: Int) -> Int {
    if bytes <= 64 { return 64 }
    let top = Int.bitWidth - (bytes - 1).leadingZeroBitCount  // 2^top >= bytes
    let step = 1 << max(top - 3, 6)
    return (bytes + step - 1) / step * step
  }

  /// Returns a 64-byte-aligned buffer of at least `bytes` bytes and the size class it belongs to.
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
    let size = sizeClass(bytes)
    var evicted: [(UnsafeMutableRawPointer, Int)] = []
    let reused: (UnsafeMutableRawPointer, Int)? = state.withLock { s in
      // The same size class if one is cached, else the smallest cached class up to twice the size:
      // buffers of neighbouring sizes then serve each other instead of piling up in the cache.
      let chosen = s.free[size] != nil ? size : s.free.keys.filter { $0 > size && $0 <= 2 * size }.min()
      let charged = chosen ?? size
      s.live += charged
      s.peak = max(s.peak, s.live)
      s.highWater = max(s.highWater, s.live)
      guard let chosen, let p = s.free[chosen]?.popLast() else {
        evicted = s.evict(atLeast: s.live + s.cached - s.highWater)
        return nil
      }
      if s.free[chosen]!.isEmpty { s.free[chosen] = nil }
      s.cached -= chosen
      return (p, chosen)
    }
    for (p, size) in evicted { systemFree(p, size) }
    return reused ?? (systemAllocate(size), size)
  }

  /// Takes back a buffer from ``allocate(_:)``; it goes to the cache while the cache has room.
  static func release(_ pointer: UnsafeMutableRawPointer, sizeClass size: Int) {
    let keep = state.withLock { s -> Bool in
      s.live -= size
      guard s.cached + size <= s.cacheLimit else { return false }
      s.free[size, default: []].append(pointer)
      s.cached += size
      return true
    }
    if !keep { systemFree(pointer, size) }
  }

  /// Buffers of a megabyte or more are mapped and unmapped directly, so that what is freed leaves
  /// the resident set at once (the C heap would keep it).
  static let mappingThreshold = 1 << 20

  private static func systemAllocate(_ size: Int) -> UnsafeMutableRawPointer {
    if size >= mappingThreshold {
      let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
      if let p, p != MAP_FAILED {
        // Transparent huge pages where the system allows them: a fresh mapping then faults in
        // 2 MiB at a time, not 4 KiB.
        if size >= 4 * mappingThreshold { _ = madvise(p, size, MADV_HUGEPAGE) }
        return p
      }
    } else {
      var raw: UnsafeMutableRawPointer?
      if posix_memalign(&raw, 64, size) == 0, let raw { return raw }
    }
    fatalError("Allocator: out of memory allocating \(size) bytes (\(liveBytes) bytes live)")
  }

  private static func systemFree(_ pointer: UnsafeMutableRawPointer, _ size: Int) {
    if size >= mappingThreshold { munmap(pointer, size) } else { free(pointer) }
  }

  struct State {
    var live = 0
    var peak = 0
    var cached = 0
    var cacheLimit = 2 << 30
    /// The most live bytes ever (``peak`` without resets): the cache keeps live plus cached
    /// bytes within it.
    var highWater = 0
    var free: [Int: [UnsafeMutableRawPointer]] = [:]

    /// Takes cached buffers worth at least `bytes` out of the cache (all of it if it holds less),
    /// before a request that the cache cannot serve is allocated: live plus cached bytes, the
    /// resident footprint, then grows only when live bytes do. Classes no larger than `bytes` go
    /// first, largest first, then the larger classes from the smallest.
    mutating func evict(atLeast bytes: Int) -> [(UnsafeMutableRawPointer, Int)] {
      var taken: [(UnsafeMutableRawPointer, Int)] = [], total = 0
      guard bytes > 0 else { return taken }
      let below = free.keys.filter { $0 <= bytes }.sorted(by: >), above = free.keys.filter { $0 > bytes }.sorted()
      for size in below + above {
        while total < bytes, let p = free[size]?.popLast() {
          taken.append((p, size))
          total += size
        }
        if free[size]?.isEmpty == true { free[size] = nil }
        if total >= bytes { break }
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
