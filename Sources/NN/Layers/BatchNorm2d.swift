import Autograd
import TensorModule

/// Batch normalisation over the channels of [N, C, H, W] inputs, exactly as PyTorch's
/// `BatchNorm2d`: in training it normalises with the batch's biased variance and updates the
/// running variance with the unbiased one; in inference it uses the running statistics.
///
/// The running statistics are updated once per step even inside a checkpoint region that is
/// replayed (contract rule 5).
public class BatchNorm2d: Layer {
  /// The scale per channel (γ), initially 1.
  public let weight: Variable
  /// The shift per channel (β), initially 0.
  public let bias: Variable
  /// The running mean per channel, initially 0.
  public let runningMean: Variable
  /// The running (unbiased) variance per channel, initially 1.
  public let runningVariance: Variable
  /// How many training batches have updated the running statistics.
  public private(set) var batchesTracked = 0
  /// Added to the variance before the square root.
  public let epsilon: Double
  /// The weight of a new batch in the running statistics.
  public let momentum: Double

  /// Batch normalisation of `channels` channels (eps 1e-5 and momentum 0.1 by default, as PyTorch).
  public init(channels: Int, epsilon: Double = 1e-5, momentum: Double = 0.1) {
    weight = parameter(Tensor(ones: [channels]), "weight")
    bias = parameter(Tensor(zeros: [channels]), "bias")
    runningMean = buffer(Tensor(zeros: [channels]), "running_mean")
    runningVariance = buffer(Tensor(ones: [channels]), "running_var")
    (self.epsilon, self.momentum) = (epsilon, momentum)
  }

  /// `weight` and `bias`.
  public var ownParameters: [(name: String, variable: Variable)] { [("weight", weight), ("bias", bias)] }
  /// `running_mean` and `running_var` (PyTorch's names).
  public var ownBuffers: [(name: String, variable: Variable)] {
    [("running_mean", runningMean), ("running_var", runningVariance)]
  }

  /// Sets the number of tracked batches (when loading a state file).
  public func setBatchesTracked(_ count: Int) { batchesTracked = count }

  /// The normalised input.
  public func callAsFunction(_ input: Variable) -> Variable { callAsFunction(input, applyingReLU: false) }

  /// The normalised input, followed by a ReLU computed in the same pass when `applyingReLU`.
  public func callAsFunction(_ input: Variable, applyingReLU: Bool) -> Variable {
    callAsFunction(input, applyingReLU: applyingReLU, statistics: nil)
  }

  /// The normalised input, followed by a ReLU computed in the same pass when `applyingReLU`.
  ///
  /// - `ceiling`: with `applyingReLU`, the ReLU capped at this value, `clamp` to [0, ceiling] (6 for
  ///   a ReLU6), in the same pass; nil for a plain ReLU.
  /// - `statistics`: in training, `input`'s batch mean and biased variance when the caller
  ///   already has them (``FeatureBuffer/batchStatistics(_:)``), which saves a pass over the input;
  ///   they must be exactly those `batchNormStatistics` computes, or the gradients are wrong.
  ///   Unused in inference; nil computes them.
  public func callAsFunction(
    _ input: Variable, applyingReLU: Bool, ceiling: Double? = nil, statistics: (mean: Tensor, variance: Tensor)?
  ) -> Variable {
    checkInput(input)
    // Every path below would check it but the recorded inference one, which composes `clamp`.
    require(ceiling == nil || applyingReLU, "BatchNorm2d: a ceiling caps the fused ReLU; pass applyingReLU: true with it")
    guard LearningPhase.current == .training else {
      if !isRecording || ![input, weight, bias].contains(where: \.requiresGrad) {
        // Nothing to differentiate: one fused pass with the running statistics.
        return Variable(
          batchNormalized(
            input.value, mean: runningMean.value, variance: runningVariance.value, weight: weight.value, bias: bias.value,
            epsilon: epsilon, applyingReLU: applyingReLU, ceiling: ceiling))
      }
      let scale = weight / sqrt(Variable(runningVariance.value) + epsilon)
      let shift = bias - Variable(runningMean.value) * scale
      let y = input * reshape(scale, to: [1, -1, 1, 1]) + reshape(shift, to: [1, -1, 1, 1])
      return ceiling.map { clamp(y, min: 0, max: $0) } ?? (applyingReLU ? relu(y) : y)
    }
    let (output, mean, variance) = batchNorm(
      input, weight: weight, bias: bias, epsilon: epsilon, applyingReLU: applyingReLU, ceiling: ceiling,
      statistics: statistics ?? batchStatistics(of: input))
    updateRunningStatistics(mean: mean, variance: variance, of: input)
    return output
  }

  /// The normalised input plus `residual` (of the input's shape), followed by a ReLU of the sum when
  /// `applyingReLU`: `relu(bn(input) + residual)`, the end of a post-activation residual block. In
  /// training one fused pass forward and two back (see
  /// `batchNorm(_:weight:bias:epsilon:adding:applyingReLU:statistics:)` in Autograd), with the bits of the
  /// composition.
  public func callAsFunction(_ input: Variable, adding residual: Variable, applyingReLU: Bool = false) -> Variable {
    checkInput(input, residual: residual)
    guard LearningPhase.current == .training else {
      let y = self(input)
      return applyingReLU ? addReLU(y, residual) : y + residual
    }
    let (output, mean, variance) = batchNorm(
      input, weight: weight, bias: bias, epsilon: epsilon, adding: residual, applyingReLU: applyingReLU,
      statistics: batchStatistics(of: input))
    updateRunningStatistics(mean: mean, variance: variance, of: input)
    return output
  }

  /// Moves the running statistics towards a training batch's mean and biased variance (PyTorch's
  /// update, with the unbiased variance), once per step: not during a checkpoint replay.
  func updateRunningStatistics(mean: Tensor, variance: Tensor, of input: Variable) {
    onFirstPass {
      let n = Double(batchNormCount(input.value))  // The global batch's when synchronized.
      let m = momentum
      runningMean.value = runningMean.value * (1 - m) + mean * m
      runningVariance.value = runningVariance.value * (1 - m) + variance * (m * n / Swift.max(n - 1, 1))
      batchesTracked += 1
    }
  }

  /// The batch mean and biased variance of `input`, computed once per step inside a checkpoint
  /// region: its replay reads back what the first pass computed instead of going over the feature
  /// map again (checkpoint optimisation B). They are the bits a second computation would give.
  func batchStatistics(of input: Variable) -> (mean: Tensor, variance: Tensor) {
    let kept = firstPassMemo("the batch statistics of \(input.shape)") {
      let (mean, variance) = batchNormStatistics(input.value)
      return [mean, variance]
    }
    return (kept[0], kept[1])
  }

  /// ``checkInput(_:)``, and that `residual` has the input's shape and dtype: checked for both
  /// phases, since inference's composition would broadcast a residual of another shape.
  func checkInput(_ input: Variable, residual: Variable) {
    checkInput(input)
    require(
      residual.shape == input.shape && residual.dtype == input.dtype,
      "BatchNorm2d: residual \(residual.shape) (\(residual.dtype)) does not match input \(input.shape) (\(input.dtype))")
  }

  func checkInput(_ input: Variable) {
    require(
      input.shape.count == 4 && input.shape[1] == weight.shape[0],
      "BatchNorm2d: input \(input.shape) does not have \(weight.shape[0]) channels in [N, C, H, W]")
  }
}
