/// A JSON value as read by ``StrictJSON/parse(_:)``.
enum JSONValue: Equatable {
  case object([(key: String, value: JSONValue)])
  case array([JSONValue])
  case string(String)
  /// A number written without fraction or exponent that fits in `Int`.
  case integer(Int)
  /// Any other number.
  case number(Double)
  case bool(Bool)
  case null

  static func == (a: JSONValue, b: JSONValue) -> Bool {
    switch (a, b) {
    case (.object(let x), .object(let y)): return x.map(\.key) == y.map(\.key) && x.map(\.value) == y.map(\.value)
    case (.array(let x), .array(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.integer(let x), .integer(let y)): return x == y
    case (.number(let x), .number(let y)): return x == y
    case (.bool(let x), .bool(let y)): return x == y
    case (.null, .null): return true
    default: return false
    }
  }

  /// The value for `key` when this is an object.
  subscript(key: String) -> JSONValue? {
    guard case .object(let pairs) = self else { return nil }
    return pairs.first { $0.key == key }?.value
  }
}

/// A strict JSON reader for headers of files that may be hostile (safetensors).
///
/// Foundation's `JSONSerialization` keeps the last of duplicate keys and turns large integers into
/// doubles without a word; a header with two entries of one name, or a shape of 2^64, must instead be
/// an error. This reader rejects duplicate keys, keeps integers exact (or says they overflow), limits
/// nesting depth, and accepts trailing spaces only (safetensors pads its header with them).
enum StrictJSON {
  /// Why a text is not accepted, with the byte offset.
  struct Failure: Error, CustomStringConvertible {
    var offset: Int
    var reason: String
    var description: String { "\(reason) at byte \(offset)" }
  }

  /// Deeper nesting than any header needs is refused instead of exhausting the stack.
  static let maximumDepth = 64

  /// Parses `bytes` as one JSON value followed only by white space.
  static func parse(_ bytes: ArraySlice<UInt8>) throws -> JSONValue {
    var reader = Reader(bytes: bytes, position: bytes.startIndex)
    let value = try reader.value(depth: 0)
    reader.skipSpace()
    guard reader.position == bytes.endIndex else { throw reader.failure("unexpected text after the value") }
    return value
  }

  private struct Reader {
    let bytes: ArraySlice<UInt8>
    var position: Int

    func failure(_ reason: String) -> Failure { Failure(offset: position - bytes.startIndex, reason: reason) }

    mutating func skipSpace() {
      while position < bytes.endIndex, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
    }

    mutating func expect(_ byte: UInt8) throws {
      skipSpace()
      guard position < bytes.endIndex, bytes[position] == byte else {
        throw failure("expected '\(Character(Unicode.Scalar(byte)))'")
      }
      position += 1
    }

    mutating func peek() -> UInt8? {
      skipSpace()
      return position < bytes.endIndex ? bytes[position] : nil
    }

    mutating func value(depth: Int) throws -> JSONValue {
      guard depth < StrictJSON.maximumDepth else { throw failure("nesting deeper than \(StrictJSON.maximumDepth)") }
      guard let first = peek() else { throw failure("unexpected end of text") }
      switch first {
      case UInt8(ascii: "{"):
        position += 1
        var pairs: [(key: String, value: JSONValue)] = []
        var keys: Set<String> = []
        if peek() == UInt8(ascii: "}") {
          position += 1
          return .object(pairs)
        }
        while true {
          guard peek() == UInt8(ascii: "\"") else { throw failure("expected a key") }
          let key = try string()
          guard keys.insert(key).inserted else { throw failure("duplicate key \"\(key)\"") }
          try expect(UInt8(ascii: ":"))
          pairs.append((key, try value(depth: depth + 1)))
          let next = peek()
          position += 1
          if next == UInt8(ascii: "}") { return .object(pairs) }
          guard next == UInt8(ascii: ",") else { position -= 1; throw failure("expected ',' or '}'") }
        }
      case UInt8(ascii: "["):
        position += 1
        var items: [JSONValue] = []
        if peek() == UInt8(ascii: "]") {
          position += 1
          return .array(items)
        }
        while true {
          items.append(try value(depth: depth + 1))
          let next = peek()
          position += 1
          if next == UInt8(ascii: "]") { return .array(items) }
          guard next == UInt8(ascii: ",") else { position -= 1; throw failure("expected ',' or ']'") }
        }
      case UInt8(ascii: "\""): return .string(try string())
      case UInt8(ascii: "t"): return try literal("true", .bool(true))
      case UInt8(ascii: "f"): return try literal("false", .bool(false))
      case UInt8(ascii: "n"): return try literal("null", .null)
      default: return try number()
      }
    }

    mutating func literal(_ word: String, _ value: JSONValue) throws -> JSONValue {
      let utf8 = Array(word.utf8)
      guard bytes.endIndex - position >= utf8.count, Array(bytes[position..<position + utf8.count]) == utf8 else {
        throw failure("unexpected character")
      }
      position += utf8.count
      return value
    }

    mutating func number() throws -> JSONValue {
      let start = position
      if position < bytes.endIndex, bytes[position] == UInt8(ascii: "-") { position += 1 }
      let digitsStart = position
      while position < bytes.endIndex, (0x30...0x39).contains(bytes[position]) { position += 1 }
      guard position > digitsStart else { throw failure("unexpected character") }
      guard bytes[digitsStart] != 0x30 || position - digitsStart == 1 else { throw failure("a number with a leading zero") }
      var integral = true
      if position < bytes.endIndex, bytes[position] == UInt8(ascii: ".") {
        integral = false
        position += 1
        let fraction = position
        while position < bytes.endIndex, (0x30...0x39).contains(bytes[position]) { position += 1 }
        guard position > fraction else { throw failure("a number without digits after '.'") }
      }
      if position < bytes.endIndex, bytes[position] | 0x20 == UInt8(ascii: "e") {
        integral = false
        position += 1
        if position < bytes.endIndex, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
        let exponent = position
        while position < bytes.endIndex, (0x30...0x39).contains(bytes[position]) { position += 1 }
        guard position > exponent else { throw failure("a number without exponent digits") }
      }
      let text = String(decoding: bytes[start..<position], as: UTF8.self)
      if integral {
        guard let value = Int(text) else { throw failure("the integer \(text) does not fit in 64 bits") }
        return .integer(value)
      }
      guard let value = Double(text), value.isFinite else { throw failure("the number \(text) is out of range") }
      return .number(value)
    }

    mutating func string() throws -> String {
      position += 1  // the opening quote
      var scalars = String.UnicodeScalarView()
      var run = position
      func flush(_ end: Int) throws {
        guard let piece = String(validating: bytes[run..<end], as: UTF8.self) else { throw failure("a string that is not UTF-8") }
        scalars.append(contentsOf: piece.unicodeScalars)
      }
      while position < bytes.endIndex {
        let byte = bytes[position]
        switch byte {
        case UInt8(ascii: "\""):
          try flush(position)
          position += 1
          return String(scalars)
        case UInt8(ascii: "\\"):
          try flush(position)
          position += 1
          guard position < bytes.endIndex else { throw failure("unterminated string") }
          let escape = bytes[position]
          position += 1
          switch escape {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(Unicode.Scalar(escape))
          case UInt8(ascii: "b"): scalars.append("\u{8}")
          case UInt8(ascii: "f"): scalars.append("\u{C}")
          case UInt8(ascii: "n"): scalars.append("\n")
          case UInt8(ascii: "r"): scalars.append("\r")
          case UInt8(ascii: "t"): scalars.append("\t")
          case UInt8(ascii: "u"): scalars.append(try unicodeEscape())
          default: throw failure("an unknown escape")
          }
          run = position
        case 0..<0x20: throw failure("a control character in a string")
        default: position += 1
        }
      }
      throw failure("unterminated string")
    }

    mutating func hexQuad() throws -> UInt32 {
      guard bytes.endIndex - position >= 4,
        let value = UInt32(String(decoding: bytes[position..<position + 4], as: UTF8.self), radix: 16)
      else { throw failure("a \\u escape without four hex digits") }
      position += 4
      return value
    }

    mutating func unicodeEscape() throws -> Unicode.Scalar {
      let high = try hexQuad()
      if (0xD800..<0xDC00).contains(high) {
        guard bytes.endIndex - position >= 2, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
          throw failure("an unpaired surrogate")
        }
        position += 2
        let low = try hexQuad()
        guard (0xDC00..<0xE000).contains(low) else { throw failure("an unpaired surrogate") }
        return Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))!
      }
      guard let scalar = Unicode.Scalar(high) else { throw failure("an unpaired surrogate") }
      return scalar
    }
  }
}
