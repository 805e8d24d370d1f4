import Autograd
import TensorModule

/// Adds `strength` · sign(γ) to the gradient of every batch-norm scale γ in `model`: the
/// subgradient of the L1 penalty `strength` · Σ|γ| of network slimming (Liu et al., "Learning
/// Efficient Convolutional Networks through Network Slimming", ICCV 2017; 1e-5 for DenseNet-40
/// and ResNet-164 there, 1e-4 for VGG), which drives the scales of unneeded channels to zero so
/// that pruning them (`DenseNet.pruned(ratio:)` in the Models module) costs little.
///
/// Call it after the backward pass and before the optimiser's step, as the official code does.
/// The gradients are complete then wherever they were computed (inside checkpoint regions too, and
/// after a data-parallel reduction, whose result is the same on every process). A scale that
/// received no gradient (its layer was not used) is left without one, as optimisers skip it;
/// sign(0) is 0, as in PyTorch. A scale shared by several normalisations is penalised once.
///
/// - Precondition: `strength` is finite and not negative.
public func addChannelSparsityGradient(_ model: any Module, strength: Double) {
  require(strength >= 0 && strength.isFinite, "addChannelSparsityGradient: strength \(strength) must be finite and not negative")
  guard strength > 0 else { return }
  var seen = Set<ObjectIdentifier>()
  for (_, module) in model.namedModules {
    guard let norm = module as? BatchNorm2d, seen.insert(ObjectIdentifier(norm.weight)).inserted, let grad = norm.weight.grad else { continue }
    norm.weight.grad = grad + sign(norm.weight.value) * strength
  }
}
