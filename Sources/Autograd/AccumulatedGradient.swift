import TensorModule

/// The gradient a recorded value has accumulated so far in a backward walk, as a place where a
/// pullback that can add its input gradient into a tensor puts it, instead of returning a new
/// tensor for the tape to add (`accumulate`).
///
/// A residual block's input is read by its first operation and by the shortcut; the shortcut's
/// gradient arrives first, as the block's sum runs last, and the first operation's input gradient
/// is added to it where it is written (the Winograd output transform, the batch normalisation's
/// backward pass): one pass over the feature map fewer, and no second map beside the first. The sum
/// is `old + new`, as the tape would add it, so the bits are the same.
struct AccumulatedGradient {
  /// Held weakly: the consumer's pullback must not keep its producer, whose release the tape makes
  /// iteratively (a deep tape released through nested closures would overflow the stack). During
  /// the walk the producer is alive.
  private weak var entry: TapeEntry?
  private let index: Int

  /// The slot of `input`'s producer, when it has one (a leaf's gradient is the user's).
  init?(_ input: Variable) {
    guard let (entry, index) = input.producer else { return nil }
    (self.entry, self.index) = (entry, index)
  }

  /// The accumulated gradient as a destination to add to, for the gradient of `x` [N, C, H, W]:
  /// when there is one, laid out like `x` (as the kernels that take a destination require), and
  /// nothing else holds its buffer. Nil otherwise, and the slot is left as it was.
  func destination(like x: Tensor) -> GradientDestination? {
    guard let entry, entry.backward != nil, var accumulated = entry.gradients[index], x.rank == 4, accumulated.shape == x.shape,
      accumulated.strides == x.strides, accumulated.dtype == x.dtype
    else { return nil }
    entry.gradients[index] = nil
    defer { entry.gradients[index] = accumulated }
    return accumulated.ownsItsStorage() ? GradientDestination([(accumulated, false)]) : nil
  }
}
