/// Free ranges of mapped memory, kept sorted by address so that a range given back merges with the
/// free ranges on either side of it.
///
/// Requests are served best-fit: carved from the start of the smallest range that holds them, the
/// rest of the range staying free. Ranges are whole pages.
struct FreeRanges {
  private var ranges: [(start: UInt, length: Int)] = []

  /// The free bytes in all ranges.
  private(set) var total = 0

  /// The number of separate free ranges.
  var count: Int { ranges.count }

  /// `length` bytes carved from the start of the smallest range at least that long, or nil if no
  /// range is long enough.
  mutating func take(_ length: Int) -> UnsafeMutableRawPointer? {
    var best: Int?
    for i in ranges.indices where ranges[i].length >= length {
      if best.map({ ranges[i].length < ranges[$0].length }) ?? true { best = i }
    }
    guard let i = best else { return nil }
    let start = ranges[i].start
    if ranges[i].length == length {
      ranges.remove(at: i)
    } else {
      ranges[i].start += UInt(length)
      ranges[i].length -= length
    }
    total -= length
    return UnsafeMutableRawPointer(bitPattern: start)
  }

  /// Adds the range of `length` bytes at `pointer`, merged with a free range that ends where it
  /// starts and with one that starts where it ends.
  mutating func insert(_ pointer: UnsafeMutableRawPointer, _ length: Int) {
    var start = UInt(bitPattern: pointer), merged = length
    var low = 0, high = ranges.count
    while low < high {
      let middle = (low + high) / 2
      if ranges[middle].start < start { low = middle + 1 } else { high = middle }
    }
    var i = low
    if i > 0 && ranges[i - 1].start + UInt(ranges[i - 1].length) == start {
      i -= 1
      start = ranges[i].start
      merged += ranges[i].length
      ranges.remove(at: i)
    }
    if i < ranges.count && start + UInt(merged) == ranges[i].start {
      merged += ranges[i].length
      ranges.remove(at: i)
    }
    ranges.insert((start, merged), at: i)
    total += length
  }

  /// Cuts whole blocks of `alignment` bytes that start at multiples of `alignment`, worth at most
  /// `bytes`, out of the free ranges, smallest range first; the parts of a range before and after
  /// its blocks stay free. (Huge pages lie in such blocks: moved whole to addresses aligned alike,
  /// they stay huge pages.)
  mutating func removeAligned(atMost bytes: Int, alignment: Int) -> [(UnsafeMutableRawPointer, Int)] {
    var taken: [(UnsafeMutableRawPointer, Int)] = [], removed = 0
    let a = UInt(alignment)
    for (start, length) in ranges.sorted(by: { $0.length < $1.length }) {
      let first = (start + a - 1) / a * a, last = (start + UInt(length)) / a * a
      let cut = min(Int(last > first ? last - first : 0), (bytes - removed) / alignment * alignment)
      guard cut > 0 else { continue }
      let i = ranges.firstIndex { $0.start == start }!
      ranges.remove(at: i)
      let end = start + UInt(length), tail = first + UInt(cut)
      if tail < end { ranges.insert((tail, Int(end - tail)), at: i) }
      if first > start { ranges.insert((start, Int(first - start)), at: i) }
      taken.append((UnsafeMutableRawPointer(bitPattern: first)!, cut))
      removed += cut
    }
    total -= removed
    return taken
  }

  /// Removes ranges worth at least `bytes` (all of them if they hold less), smallest first, for
  /// giving back to the system; of the last range only the whole granules needed are cut off its
  /// end, since a large free range serves the most requests.
  mutating func remove(atLeast bytes: Int, granule: Int) -> [(UnsafeMutableRawPointer, Int)] {
    var taken: [(UnsafeMutableRawPointer, Int)] = [], removed = 0
    while removed < bytes, let i = ranges.indices.min(by: { ranges[$0].length < ranges[$1].length }) {
      let need = (bytes - removed + granule - 1) / granule * granule
      let (start, length) = ranges[i]
      if length <= need {
        ranges.remove(at: i)
        taken.append((UnsafeMutableRawPointer(bitPattern: start)!, length))
        removed += length
      } else {
        ranges[i].length -= need
        taken.append((UnsafeMutableRawPointer(bitPattern: start + UInt(length - need))!, need))
        removed += need
      }
    }
    total -= removed
    return taken
  }
}
