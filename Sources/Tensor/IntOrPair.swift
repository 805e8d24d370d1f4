/// A size given once for both spatial dimensions (`3`) or as a (height, width) pair (`[3, 1]`).
public struct IntOrPair: ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral, Equatable, Sendable, CustomStringConvertible {
  /// The size along the height.
  public var height: Int
  /// The size along the width.
  public var width: Int

  /// The same size along both dimensions.
  public init(_ value: Int) { (height, width) = (value, value) }
  /// Different sizes along height and width.
  public init(_ height: Int, _ width: Int) { (self.height, self.width) = (height, width) }
  /// The same size along both dimensions.
  public init(integerLiteral value: Int) { self.init(value) }
  /// `[height, width]`.
  ///
  /// - Precondition: exactly two elements.
  public init(arrayLiteral elements: Int...) {
    require(elements.count == 2, "IntOrPair: expected [height, width], got \(elements)")
    self.init(elements[0], elements[1])
  }

  /// `3` or `[3, 1]`.
  public var description: String { height == width ? "\(height)" : "[\(height), \(width)]" }
}
