import CZlib

/// Decompresses gzip data with zlib, never producing more than the data's own header allows.
///
/// A few kilobytes of gzip can expand to gigabytes, so the size is checked while inflating:
/// `declaredSize` sees the output so far and returns the total size its header declares once it
/// can tell (nil until then); output past that size, or past `limit`, is an error before it is
/// allocated.
///
/// - Throws: ``StateFileError/corrupt(_:_:)`` (naming `path`) when the data is not valid gzip, is
///   truncated, or expands past its declared size.
func gunzip(
  _ input: [UInt8], path: String, limit: Int = 1 << 32, declaredSize: ([UInt8]) throws -> Int? = { _ in nil }
) throws -> [UInt8] {
  var stream = z_stream()
  guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
    throw StateFileError.corrupt(path, "zlib could not start")
  }
  defer { inflateEnd(&stream) }
  var bound = limit, known = false
  var output = [UInt8](repeating: 0, count: min(bound + 1, max(1 << 16, input.count * 4)))
  var produced = 0
  var status = Z_OK
  try input.withUnsafeBufferPointer { source in
    stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
    stream.avail_in = UInt32(source.count)
    while status != Z_STREAM_END {
      if produced == output.count {
        // One byte past the bound is room enough to tell that the data is too long.
        guard produced <= bound else {
          throw StateFileError.corrupt(path, "the gzip data expands past \(bound) bytes\(known ? ", the size its header declares" : "")")
        }
        output += [UInt8](repeating: 0, count: min(output.count, bound + 1 - output.count))
      }
      status = output.withUnsafeMutableBufferPointer { target in
        stream.next_out = target.baseAddress! + produced
        stream.avail_out = UInt32(min(target.count - produced, Int(UInt32.max)))
        let before = Int(stream.avail_out)
        let result = inflate(&stream, Z_NO_FLUSH)
        produced += before - Int(stream.avail_out)
        return result
      }
      if status == Z_BUF_ERROR && stream.avail_in == 0 { throw StateFileError.corrupt(path, "the gzip data is truncated") }
      guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
        throw StateFileError.corrupt(path, "the gzip data is invalid (zlib status \(status))")
      }
      if !known, let size = try declaredSize(Array(output[0..<produced])) {
        (bound, known) = (min(size, limit), true)
      }
      if produced > bound {
        throw StateFileError.corrupt(path, "the gzip data expands past \(bound) bytes\(known ? ", the size its header declares" : "")")
      }
    }
  }
  return Array(output[0..<produced])
}
