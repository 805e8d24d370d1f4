import TensorModule

/// The gradient a value has accumulated so far in a backward walk, as a place where a pullback that
/// can add its input gradient into a tensor puts it, instead of returning a new tensor for the tape
/// to add (`accumulate`).
///
/// A residual block's input is read by its first operation and by the shortcut; the shortcut's
/// gradient arrives first, as the block's sum runs last, and the first operation's input gradient
/// is added to it where it is written (the Winograd output transform, the batch normalisation's
/// backward pass): one pass over the feature map fewer, and no second map beside the first. The sum
/// is `old + new`, as the tape would add it, so the bits are the same.
///
/// The value is a recorded one (its producer's slot) or a leaf (its ``Variable/grad``). The leaf
/// case is what a checkpoint replay needs: there the region's inputs are leaves that stand in for
/// the recorded values (checkpoint rule 8), and a residual block that is a region would otherwise
/// add its first operation's input gradient to the shortcut's in a pass of its own.
struct AccumulatedGradient {
  /// Held weakly: the consumer's pullback must not keep its producer, whose release the tape makes
  /// iteratively (a deep tape released through nested closures would overflow the stack). During
  /// the walk the producer is alive.
  private weak var entry: TapeEntry?
  /// The leaf, held weakly for the same reason as a producer: the pullback must not keep it.
  private weak var leaf: Variable?
  private let index: Int

  /// The slot of `input`'s producer, or the gradient of `input` if it is a leaf that requires one.
  init?(_ input: Variable) {
    if let (entry, index) = input.producer {
      (self.entry, self.index) = (entry, index)
    } else if input.requiresGrad {
      (self.leaf, self.index) = (input, 0)
    } else {
      return nil
    }
  }

  /// The accumulated gradient as a destination to add to, for the gradient of `x` [N, C, H, W]:
  /// when there is one, laid out like `x` (as the kernels that take a destination require), and
  /// nothing else holds its buffer (a leaf's gradient a caller kept from an earlier pass is not
  /// added to in place). Nil otherwise, and the slot is left as it was.
  func destination(like x: Tensor) -> GradientDestination? {
    if let entry {
      guard entry.backward != nil else { return nil }
      return Self.destination(in: &entry.gradients[index], like: x)
    }
    guard let leaf else { return nil }
    return Self.destination(in: &leaf.grad, like: x)
  }

  /// The gradient in `slot` as a destination for the gradient of `x`, if it is a 4-D map laid out
  /// like `x` whose buffer only the slot holds. The slot is emptied while the buffer's references
  /// are counted, so that the one left is this function's own, and then given its gradient back.
  private static func destination(in slot: inout Tensor?, like x: Tensor) -> GradientDestination? {
    guard var accumulated = slot, x.rank == 4, accumulated.shape == x.shape, accumulated.strides == x.strides,
      accumulated.dtype == x.dtype
    else { return nil }
    slot = nil
    defer { slot = accumulated }
    return accumulated.ownsItsStorage() ? GradientDestination([(accumulated, false)]) : nil
  }
}
