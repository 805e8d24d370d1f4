import Foundation

/// The learning rate as a function of the training step (counted from 0), as PyTorch's schedulers
/// compute it when stepped once per iteration.
public indirect enum LearningRateSchedule: Sendable, Equatable {
  /// The base rate throughout.
  case constant
  /// The base rate times `gamma` for every milestone step already reached.
  case multiStep(milestones: [Int], gamma: Double)
  /// Cosine annealing from the base rate to `minimum` (a rate, not a fraction of the base) over
  /// `totalSteps` (Loshchilov and Hutter 2017), then `minimum`.
  case cosine(totalSteps: Int, minimum: Double)
  /// Cosine annealing restarted `cycles` times over `totalSteps`: snapshot ensembles (Huang et al. 2017),
  /// lr = base / 2 · (cos(π · (t mod ⌈T/M⌉) / ⌈T/M⌉) + 1).
  case cyclicCosine(totalSteps: Int, cycles: Int)
  /// A linear warm-up over `steps` steps, base · (t + 1) / steps, then `schedule`, which counts its
  /// steps from the end of the warm-up.
  case warmup(steps: Int, then: LearningRateSchedule)

  /// The learning rate at `step` for base rate `base`.
  public func rate(base: Double, step: Int) -> Double {
    switch self {
    case .constant: return base
    case .multiStep(let milestones, let gamma):
      return base * pow(gamma, Double(milestones.filter { step >= $0 }.count))
    case .cosine(let total, let minimum):
      let t = Double(min(step, total)) / Double(max(total, 1))
      return minimum + (base - minimum) * (1 + cos(.pi * t)) / 2
    case .cyclicCosine(let total, let cycles):
      let period = (total + max(cycles, 1) - 1) / max(cycles, 1)
      return base / 2 * (cos(.pi * Double(step % max(period, 1)) / Double(max(period, 1))) + 1)
    case .warmup(let steps, let schedule):
      return step < steps ? base * Double(step + 1) / Double(steps) : schedule.rate(base: base, step: step - steps)
    }
  }
}
