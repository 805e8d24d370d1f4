import Autograd
import TensorModule

/// A network whose forward pass is a sequence of named stages: the rows of `reprise summary`, and
/// the shape of the architecture tables in papers. Its stages are the units of its chain
/// structure, which a ``CheckpointPlan`` maps to checkpoint regions.
public protocol Network: Composition {
  /// The stages applied in order; their composition is the forward pass.
  var stages: [(name: String, layer: any Layer)] { get }
  /// The hand-made checkpoint plan for training in little memory (`reprise train
  /// --memory-efficient`): by default every leaf unit a region that keeps nothing.
  func memoryEfficientPlan() -> CheckpointPlan
}

extension Network {
  /// The stages.
  public var composedLayers: [(name: String, layer: any Layer)] { stages }

  /// Every leaf unit a region that keeps nothing.
  public func memoryEfficientPlan() -> CheckpointPlan { .everyUnit(of: self) }
}

/// Named sub-modules that are not called as one layer (PyTorch's `ModuleList` or a `features`
/// container); it exists to give parameters their dotted names.
public final class ModuleContainer: Module {
  /// The sub-modules.
  public let children: [(name: String, module: any Module)]

  /// A container of the given named modules.
  public init(_ children: [(name: String, module: any Module)]) { self.children = children }
}

/// One row of a network summary.
public struct StageSummary: Sendable {
  /// The stage's name (a dotted module path).
  public var name: String
  /// The stage's output shape.
  public var outputShape: [Int]
  /// Trainable parameters of the stage.
  public var parameters: Int
  /// Multiply-accumulates of the stage for the given input, counted as the model defines it
  /// (the convention of the papers and torchvision).
  public var multiplyAccumulates: Int
  /// Multiply-accumulates that Reprise performs for the stage: fewer than `multiplyAccumulates`
  /// where a layer computes the same function with less work (DenseNet's transitions pool first).
  public var computedMultiplyAccumulates: Int
}

extension Network {
  /// Runs one input of `inputShape` [N, C, H, W] through the stages in inference, without recording,
  /// and returns each stage's output shape, parameters and multiply-accumulates (as defined and as
  /// computed).
  public func summary(inputShape: [Int]) -> [StageSummary] {
    withoutRecording {
      withLearningPhase(.inference) {
        var x = Variable(Tensor(zeros: inputShape, dtype: parameters.first?.dtype ?? .float32))
        return stages.map { name, layer in
          let (y, macs, computed) = countingMultiplyAccumulates { layer(x) }
          x = y
          return StageSummary(
            name: name, outputShape: y.shape, parameters: layer.parameterCount, multiplyAccumulates: macs,
            computedMultiplyAccumulates: computed)
        }
      }
    }
  }
}
