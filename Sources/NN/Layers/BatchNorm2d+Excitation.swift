import Autograd
import TensorModule

extension BatchNorm2d {
  /// `relu(y · excitation(mean(y, alongAxes: [2, 3])) + residual)` with `y` the normalised input:
  /// the end of a squeeze-and-excitation residual block, `excitation` mapping the pooled means [N,
  /// C] to one factor per image and channel, [N, C, 1, 1]. In training one fused operation (see
  /// `batchNorm(_:weight:bias:epsilon:excitation:adding:statistics:)` in Autograd), which never writes
  /// `y`, with the bits of the composition; in inference the composition.
  public func callAsFunction(_ input: Variable, excitation: (Variable) -> Variable, adding residual: Variable) -> Variable {
    checkInput(input, residual: residual)
    guard LearningPhase.current == .training else {
      let y = self(input)
      return addReLU(y, scaledBy: excitation(mean(y, alongAxes: [2, 3])), residual)
    }
    let (output, mean, variance) = batchNorm(
      input, weight: weight, bias: bias, epsilon: epsilon, excitation: excitation, adding: residual, statistics: batchStatistics(of: input))
    updateRunningStatistics(mean: mean, variance: variance, of: input)
    return output
  }
}
