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
      try checkSize(path: path)
      switch dtype {
      case "F32": return Tensor(elements(Float.self), shape: shape)
      case "F64": return Tensor(elements(Double.self), shape: shape)
      case "I64", "I32", "U8": return Tensor(try integers(path: path).map(Double.init), shape: shape)
      default: throw StateFileError.corrupt(path, "dtype \(dtype) is not supported (F32, F64, I64, I32, U8 are)")
      }
    }

    /// The entry's elements as integers (for labels and counters).
    ///
    /// - Throws: ``StateFileError/corrupt(_:_:)`` for non-integer dtypes.
    public func integers(path: String = "") throws -> [Int] {
      try checkSize(path: path)
      switch dtype {
      case "I64": return elements(Int64.self).map { Int(Int64(littleEndian: $0)) }
      case "I32": return elements(Int32.self).map { Int(Int32(littleEndian: $0)) }
      case "U8": return bytes.map(Int.init)
      default: throw StateFileError.corrupt(path, "expected an integer dtype, found \(dtype)")
      }
    }

    /// The bytes as `count` values of `T`, read without assuming alignment.
    func elements<T: BitwiseCopyable>(_: T.Type) -> [T] {
      let count = bytes.count / MemoryLayout<T>.stride
      return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        bytes.withUnsafeBytes { raw in
          UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<count * MemoryLayout<T>.stride]))
        }
        initialized = count
      }
    }

    /// Checks that the bytes hold exactly the shape's elements of the dtype (an entry built by hand
    /// may not).
    func checkSize(path: String) throws {
      guard SafeTensors.byteCount(dtype, shape) == bytes.count else {
        throw StateFileError.corrupt(path, "a \(dtype) entry of shape \(shape) does not hold its \(bytes.count) bytes")
      }
    }

    /// The entry, named `name` in errors, as a tensor of its own float dtype, refused unless it is
    /// F32 or F64 with every value finite: what weights, optimiser state and network inputs must be.
    ///
    /// - Throws: ``StateFileError/corrupt(_:_:)`` naming the entry.
    public func finiteFloatTensor(named name: String, path: String = "") throws -> Tensor {
      guard dtype == "F32" || dtype == "F64" else { throw StateFileError.corrupt(path, "'\(name)' is \(dtype), not F32 or F64") }
      let t = try tensor(path: path)
      guard t.isFinite else { throw StateFileError.corrupt(path, "'\(name)' holds values that are not finite") }
      return t
    }

    /// A float entry holding `tensor` in row-major order.
    public init(_ tensor: Tensor) {
      let t = tensor.contiguous()
      shape = t.shape
      func entry<T: TensorScalar>(_: T.Type) -> (String, [UInt8]) {
        (T.self == Float.self ? "F32" : "F64", t.scalars(as: T.self).withUnsafeBytes { Array($0) })
      }
      (dtype, bytes) = t.dtype.dispatch(entry, entry)
    }

    /// A 64-bit integer entry.
    public init(integers: [Int64], shape: [Int]) {
      (dtype, self.shape) = ("I64", shape)
      bytes = integers.map(\.littleEndian).withUnsafeBytes { Array($0) }
    }

    init(dtype: String, shape: [Int], bytes: [UInt8]) { (self.dtype, self.shape, self.bytes) = (dtype, shape, bytes) }
  }

  static let sizes = ["F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8]

  /// The largest header the format allows (the reference implementation's limit).
  public static let maximumHeaderBytes = 100_000_000

  /// Reads every entry and the metadata of the file at `path`.
  ///
  /// - Throws: ``StateFileError`` when the file cannot be read or is not valid safetensors.
  public static func read(_ path: String) throws -> (entries: [String: Entry], metadata: [String: String]) {
    guard let data = FileManager.default.contents(atPath: path) else { throw StateFileError.unreadable(path) }
    return try parse([UInt8](data), path: path)
  }

  /// Reads every entry and the metadata of safetensors `bytes`; `path` names them in errors.
  ///
  /// Nothing is trusted before it is checked: the header length against the file, the header as
  /// strict JSON (no duplicate keys, exact integers), each dtype, shape and byte range with checked
  /// arithmetic, and the ranges against each other: they must tile the data exactly, with neither
  /// gaps nor overlaps, so that a header one byte short or long is an error, not a shifted read.
  ///
  /// - Throws: ``StateFileError/corrupt(_:_:)`` saying what is wrong.
  public static func parse(_ bytes: [UInt8], path: String = "data") throws -> (entries: [String: Entry], metadata: [String: String]) {
    func corrupt(_ why: String) -> StateFileError { .corrupt(path, why) }
    guard bytes.count >= 8 else { throw corrupt("\(bytes.count) bytes is too short for a header") }
    let declared = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    guard declared <= UInt64(bytes.count - 8) else {
      throw corrupt("header length \(declared) exceeds the \(bytes.count - 8) bytes after the length field")
    }
    guard declared <= UInt64(maximumHeaderBytes) else { throw corrupt("header length \(declared) exceeds \(maximumHeaderBytes) bytes") }
    let dataStart = 8 + Int(declared), dataCount = bytes.count - dataStart
    let header: JSONValue
    do { header = try StrictJSON.parse(bytes[8..<dataStart]) } catch { throw corrupt("the header is not valid JSON: \(error)") }
    guard case .object(let pairs) = header else { throw corrupt("the header is not a JSON object") }
    var entries: [String: Entry] = [:], metadata: [String: String] = [:]
    var ranges: [(name: String, range: Range<Int>)] = []
    for (name, value) in pairs {
      if name == "__metadata__" {
        guard case .object(let items) = value else { throw corrupt("__metadata__ is not an object") }
        for (key, item) in items {
          guard case .string(let text) = item else { throw corrupt("__metadata__ value '\(key)' is not a string") }
          metadata[key] = text
        }
        continue
      }
      guard case .string(let dtype)? = value["dtype"], case .array(let dims)? = value["shape"],
        case .array(let offsets)? = value["data_offsets"], offsets.count == 2,
        case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1]
      else { throw corrupt("entry '\(name)' lacks a dtype, shape or data_offsets of two integers") }
      guard sizes[dtype] != nil else { throw corrupt("entry '\(name)' has unknown dtype \(dtype)") }
      var shape: [Int] = []
      for dim in dims {
        guard case .integer(let d) = dim, d >= 0 else { throw corrupt("entry '\(name)' has a shape that is not non-negative integers") }
        shape.append(d)
      }
      guard 0 <= begin, begin <= end, end <= dataCount else {
        throw corrupt("entry '\(name)' has byte range [\(begin), \(end)) outside the \(dataCount) bytes of data")
      }
      guard byteCount(dtype, shape) == end - begin else {
        throw corrupt("entry '\(name)' of shape \(shape) (\(dtype)) does not fill its \(end - begin) bytes")
      }
      ranges.append((name, begin..<end))
      entries[name] = Entry(dtype: dtype, shape: shape, bytes: Array(bytes[dataStart + begin..<dataStart + end]))
    }
    var covered = 0
    for (name, range) in ranges.sorted(by: { ($0.range.lowerBound, $0.range.upperBound) < ($1.range.lowerBound, $1.range.upperBound) }) {
      guard range.lowerBound == covered else {
        throw corrupt(range.lowerBound < covered
          ? "entry '\(name)' at byte \(range.lowerBound) overlaps the entry before it (which ends at \(covered))"
          : "bytes \(covered)..<\(range.lowerBound) of the data belong to no entry")
      }
      covered = range.upperBound
    }
    guard covered == dataCount else {
      throw corrupt("the entries cover \(covered) bytes of data, the file has \(dataCount) (a wrong header length?)")
    }
    return (entries, metadata)
  }

  /// The bytes of a `dtype` array of `shape`, or nil for an unknown dtype or a size past `Int`.
  static func byteCount(_ dtype: String, _ shape: [Int]) -> Int? {
    guard let size = sizes[dtype], let count = checkedProduct(shape) else { return nil }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    return overflow ? nil : bytes
  }

  /// The product of `dimensions`, or nil when it overflows `Int`.
  static func checkedProduct(_ dimensions: [Int]) -> Int? {
    var product = 1
    for d in dimensions {
      let (p, overflow) = product.multipliedReportingOverflow(by: d)
      if overflow { return nil }
      product = p
    }
    return product
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
  ///
  /// A symbolic link at `path` is written through (its target is replaced, the link stays), and an
  /// existing file keeps its permission bits. The temporary file is named after this process; ones
  /// that earlier, interrupted saves of the same file left behind (their process is gone) are removed.
  static func atomicWrite(_ data: Data, to path: String) throws {
    let target = resolvingSymbolicLinks(path)
    let url = URL(fileURLWithPath: target)
    let directory = url.deletingLastPathComponent().path, prefix = ".\(url.lastPathComponent).tmp-"
    removeAbandonedTemporaries(in: directory, prefix: prefix)
    let temporary = directory + "/" + prefix + "\(getpid())"
    var existing = stat()
    let mode = stat(target, &existing) == 0 ? existing.st_mode & 0o7777 : 0o666 & ~currentUmask()
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode_t(0o600))
    guard fd >= 0 else { throw StateFileError.unwritable(path, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
    var failure: String?
    data.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let written = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
        if written < 0 {
          if errno == EINTR { continue }
          failure = String(cString: strerror(errno))
          return
        }
        offset += written
      }
    }
    if failure == nil, fchmod(fd, mode) != 0 { failure = String(cString: strerror(errno)) }
    if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
    if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
    if failure == nil, rename(temporary, target) != 0 { failure = String(cString: strerror(errno)) }
    if let failure {
      unlink(temporary)
      throw StateFileError.unwritable(path, failure)
    }
  }

  /// `path` with every symbolic link along it followed (a link to a file not yet written resolves
  /// to that file's path); `path` itself when it is not a link.
  static func resolvingSymbolicLinks(_ path: String) -> String {
    var current = path
    for _ in 0..<40 {
      guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: current) else { return current }
      current = destination.hasPrefix("/") ? destination : URL(fileURLWithPath: current).deletingLastPathComponent().appendingPathComponent(destination).path
    }
    return current
  }

  /// Removes `prefix<pid>` files in `directory` whose process no longer exists.
  static func removeAbandonedTemporaries(in directory: String, prefix: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
    for name in names where name.hasPrefix(prefix) {
      guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
      unlink(directory + "/" + name)
    }
  }

  /// The process's file-creation mask.
  static func currentUmask() -> mode_t {
    let mask = umask(0o022)
    umask(mask)
    return mask
  }
}
