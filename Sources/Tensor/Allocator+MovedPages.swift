import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Requests assembled from free ranges: the pages of cached ranges moved into a new mapping instead
/// of given back while fresh pages fault in (see ``Allocator``).
extension Allocator {
  /// Whether large requests are assembled from free ranges: only Linux can move pages between
  /// mappings.
  #if os(Linux)
  static let movesPages = true
  #else
  static let movesPages = false
  #endif

  /// The size and alignment of a transparent huge page on x86-64 and most arm64 systems. Pages move
  /// in whole blocks of this size between addresses aligned to it, so that the kernel moves a huge
  /// page as one; a block moved to another offset would be split into small pages, and the kernels
  /// that stream through it would then miss the TLB more often.
  static let hugePage = 2 << 20

  /// A mapping of `size` bytes at a multiple of ``hugePage`` whose first pages are those of
  /// `pieces` (whole huge-page blocks, taken out of the cache), moved in order; the rest is fresh.
  static func assembled(_ size: Int, from pieces: [Piece]) -> UnsafeMutableRawPointer {
    let p = alignedMapping(size)
    var offset = 0
    for piece in pieces {
      movePages(piece.pointer, piece.size, to: p + offset)
      offset += piece.size
    }
    return p
  }

  /// A fresh mapping of `size` bytes at a multiple of ``hugePage``.
  private static func alignedMapping(_ size: Int) -> UnsafeMutableRawPointer {
    let raw = systemAllocate(size + hugePage)
    let address = UInt(bitPattern: raw), aligned = (address + UInt(hugePage) - 1) / UInt(hugePage) * UInt(hugePage)
    let head = Int(aligned - address)
    if head > 0 { munmap(raw, head) }
    munmap(raw + head + size, hugePage - head)
    return raw + head
  }

  /// Moves the pages at `from` to `to`, which lies in a fresh mapping. A range that spans mappings
  /// (free ranges merge across them) moves in halves, whole huge-page blocks while it holds two or
  /// more; pages that cannot move at all go back to the system, and fresh pages take their place.
  private static func movePages(_ from: UnsafeMutableRawPointer, _ length: Int, to: UnsafeMutableRawPointer) {
    let error = reprise_move_pages(from, length, to)
    guard error != 0 else { return }
    if error == EFAULT && length > granule {
      let unit = length >= 2 * hugePage ? hugePage : granule
      let half = length / 2 / unit * unit
      movePages(from, half, to: to)
      movePages(from + half, length - half, to: to + half)
      return
    }
    munmap(from, length)
    // A failed move may have unmapped the destination first.
    let fresh = mmap(to, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    precondition(fresh == to, "Allocator: could not map \(length) bytes in place of pages that did not move")
    state.withLock { $0.fresh += length }
  }
}
