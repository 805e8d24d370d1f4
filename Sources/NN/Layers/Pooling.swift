import Autograd
import TensorModule

/// The maximum of each window of [N, C, H, W] inputs.
public final class MaxPool2d: Layer {
  /// The window size.
  public let kernelSize: IntOrPair
  /// The step between windows (the kernel size by default).
  public let stride: IntOrPair
  /// Implicit padding that never wins the maximum.
  public let padding: IntOrPair

  /// Max pooling with the given window.
  public init(kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0) {
    (self.kernelSize, self.stride, self.padding) = (kernelSize, stride ?? kernelSize, padding)
  }

  /// The pooled input.
  public func callAsFunction(_ input: Variable) -> Variable {
    maxPool2d(input, kernelSize: kernelSize, stride: stride, padding: padding)
  }
}

/// The mean of each window of [N, C, H, W] inputs.
public final class AvgPool2d: Layer {
  /// The window size.
  public let kernelSize: IntOrPair
  /// The step between windows (the kernel size by default).
  public let stride: IntOrPair
  /// Implicit zero padding.
  public let padding: IntOrPair
  /// Whether padded positions count in the divisor (PyTorch's default: yes).
  public let countingPadding: Bool

  /// Average pooling with the given window.
  public init(kernelSize: IntOrPair, stride: IntOrPair? = nil, padding: IntOrPair = 0, countingPadding: Bool = true) {
    (self.kernelSize, self.stride, self.padding, self.countingPadding) = (kernelSize, stride ?? kernelSize, padding, countingPadding)
  }

  /// The pooled input.
  public func callAsFunction(_ input: Variable) -> Variable {
    avgPool2d(input, kernelSize: kernelSize, stride: stride, padding: padding, countingPadding: countingPadding)
  }
}

/// The mean over H and W of [N, C, H, W] inputs, giving [N, C].
public final class GlobalAvgPool2d: Layer {
  /// Global average pooling.
  public init() {}
  /// The per-channel means, [N, C].
  public func callAsFunction(_ input: Variable) -> Variable {
    require(input.shape.count == 4, "GlobalAvgPool2d: input must be [N, C, H, W], got \(input.shape)")
    return mean(input, alongAxes: [2, 3])
  }
}
