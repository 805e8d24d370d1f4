import CZlib

/// Decompresses gzip data with zlib.
///
/// - Throws: ``StateFileError/corrupt(_:_:)`` (naming `path`) when the data is not valid gzip or is truncated.
func gunzip(_ input: [UInt8], path: String) throws -> [UInt8] {
  var stream = z_stream()
  guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
    throw StateFileError.corrupt(path, "zlib could not start")
  }
  defer { inflateEnd(&stream) }
  var output = [UInt8](repeating: 0, count: max(1 << 16, input.count * 4))
  var produced = 0
  var status = Z_OK
  try input.withUnsafeBufferPointer { source in
    stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
    stream.avail_in = UInt32(source.count)
    while status != Z_STREAM_END {
      if produced == output.count { output += [UInt8](repeating: 0, count: output.count) }
      status = output.withUnsafeMutableBufferPointer { target in
        stream.next_out = target.baseAddress! + produced
        stream.avail_out = UInt32(target.count - produced)
        let result = inflate(&stream, Z_NO_FLUSH)
        produced = target.count - Int(stream.avail_out)
        return result
      }
      if status == Z_BUF_ERROR && stream.avail_in == 0 { throw StateFileError.corrupt(path, "the gzip data is truncated") }
      guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
        throw StateFileError.corrupt(path, "the gzip data is invalid (zlib status \(status))")
      }
    }
  }
  return Array(output[0..<produced])
}
