import Foundation
import TensorModule

/// The safetensors format: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the raw little-endian data.
///
/// Reading validates everything before touching the data, so a truncated or corrupt file is an
/// error, never a crash or an out-of-bounds read. Writing is atomic: a temporary file beside the
/// target is written, flushed and renamed over it, so an interrupted save leaves the old file.
public enum SafeTensors {
  /// One stored array: its dtype name (`F32`, `F64`, `I64`, `I32`, `U8`), shape and bytes.
  public struct Entry: Sendable {
    /// The safetensors dtype name.
    public var dtype: String
    /// The shape.
    public var shape: [Int]
    /// The raw little-endian bytes.
    public var bytes: [UInt8]

    /// The entry as a tensor (float types keep their dtype; integers become Float32 or Float64).
    ///
    /// - Throws: ``StateFileError/corrupt(_:_:)`` for dtypes that are not numbers Reprise reads.
    public func tensor(path: String = "") throws -> Tensor {
      switch dtype {
      case "F32": return Tensor(bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }, shape: shape)
      case "F64": return Tensor(bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }, shape: shape)
      case "I64", "I32", "U8": return Tensor(try integers(path: path).map(Double.init), shape: shape)
      default: throw StateFileError.corrupt(path, "dtype \(dtype) is not supported (F32, F64, I64, I32, U8 are)")
      }
    }

    /// The entry's elements as integers (for labels and counters).
    ///
    /// - Throws: ``StateFileError/corrupt(_:_:)`` for non-integer dtypes.
    public func integers(path: String = "") throws -> [Int] {
      switch dtype {
      case "I64": return bytes.withUnsafeBytes { $0.bindMemory(to: Int64.self).map { Int(Int64(littleEndian: $0)) } }
      case "I32": return bytes.withUnsafeBytes { $0.bindMemory(to: Int32.self).map { Int(Int32(littleEndian: $0)) } }
      case "U8": return bytes.map(Int.init)
      default: throw StateFileError.corrupt(path, "expected an integer dtype, found \(dtype)")
      }
    }

    /// A float entry holding `tensor` in row-major order.
    public init(_ tensor: Tensor) {
      let t = tensor.contiguous()
      shape = t.shape
      switch t.dtype {
      case .float32: (dtype, bytes) = ("F32", t.scalars(as: Float.self).withUnsafeBytes { Array($0) })
      case .float64: (dtype, bytes) = ("F64", t.scalars(as: Double.self).withUnsafeBytes { Array($0) })
      }
    }

    /// A 64-bit integer entry.
    public init(integers: [Int64], shape: [Int]) {
      (dtype, self.shape) = ("I64", shape)
      bytes = integers.map(\.littleEndian).withUnsafeBytes { Array($0) }
    }

    init(dtype: String, shape: [Int], bytes: [UInt8]) { (self.dtype, self.shape, self.bytes) = (dtype, shape, bytes) }
  }

  static let sizes = ["F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8]

  /// Reads every entry and the metadata of the file at `path`.
  ///
  /// - Throws: ``StateFileError`` when the file cannot be read or is not valid safetensors.
  public static func read(_ path: String) throws -> (entries: [String: Entry], metadata: [String: String]) {
    guard let data = FileManager.default.contents(atPath: path) else { throw StateFileError.unreadable(path) }
    let bytes = [UInt8](data)
    guard bytes.count >= 8 else { throw StateFileError.corrupt(path, "\(bytes.count) bytes is too short for a header") }
    let headerLength = bytes[0..<8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    guard headerLength <= UInt64(bytes.count - 8) else {
      throw StateFileError.corrupt(path, "header length \(headerLength) exceeds the file size \(bytes.count)")
    }
    let dataStart = 8 + Int(headerLength)
    guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<dataStart])) as? [String: Any] else {
      throw StateFileError.corrupt(path, "the header is not a JSON object")
    }
    var entries: [String: Entry] = [:], metadata: [String: String] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        metadata = (value as? [String: String]) ?? [:]
        continue
      }
      guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
        let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2
      else { throw StateFileError.corrupt(path, "entry '\(name)' lacks dtype, shape or data_offsets") }
      guard let size = sizes[dtype] else { throw StateFileError.corrupt(path, "entry '\(name)' has unknown dtype \(dtype)") }
      guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1],
        offsets[1] <= bytes.count - dataStart
      else { throw StateFileError.corrupt(path, "entry '\(name)' has byte range \(offsets) outside the data (\(bytes.count - dataStart) bytes)") }
      let (count, overflow) = shape.reduce((1, false)) { acc, d in
        let (p, o) = acc.0.multipliedReportingOverflow(by: d)
        return (p, acc.1 || o)
      }
      guard !overflow, count * size == offsets[1] - offsets[0] else {
        throw StateFileError.corrupt(path, "entry '\(name)' of shape \(shape) (\(dtype)) does not fill its \(offsets[1] - offsets[0]) bytes")
      }
      entries[name] = Entry(dtype: dtype, shape: shape, bytes: Array(bytes[dataStart + offsets[0]..<dataStart + offsets[1]]))
    }
    return (entries, metadata)
  }

  /// Writes `entries` and `metadata` to `path` atomically (temporary file, flush, rename).
  ///
  /// - Throws: ``StateFileError/unwritable(_:_:)`` when the file cannot be written.
  public static func write(_ entries: [(String, Entry)], metadata: [String: String] = [:], to path: String) throws {
    var header: [String: Any] = [:]
    var offset = 0
    for (name, entry) in entries {
      header[name] = ["dtype": entry.dtype, "shape": entry.shape, "data_offsets": [offset, offset + entry.bytes.count]]
      offset += entry.bytes.count
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data()
    out.reserveCapacity(8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    for (_, entry) in entries { out.append(contentsOf: entry.bytes) }
    try atomicWrite(out, to: path)
  }

  /// Writes `data` to a temporary file beside `path`, flushes it and renames it over `path`.
  static func atomicWrite(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    guard FileManager.default.createFile(atPath: temporary.path, contents: nil),
      let handle = FileHandle(forWritingAtPath: temporary.path)
    else { throw StateFileError.unwritable(path, "cannot create \(temporary.path)") }
    do {
      try handle.write(contentsOf: data)
      try handle.synchronize()
      try handle.close()
      guard rename(temporary.path, path) == 0 else { throw StateFileError.unwritable(path, String(cString: strerror(errno))) }
    } catch {
      try? FileManager.default.removeItem(at: temporary)
      if let e = error as? StateFileError { throw e }
      throw StateFileError.unwritable(path, "\(error)")
    }
  }
}
