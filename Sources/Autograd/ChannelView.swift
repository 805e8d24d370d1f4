import TensorModule

/// Records `value`, channels `channels` of a channel-major buffer that the `pieces` fill side by
/// side, as a differentiable view of those pieces: its gradient is split among them.
///
/// A consumer that supports it (the training-mode batch normalisations,
/// ``batchNorm(_:weight:bias:epsilon:applyingReLU:ceiling:statistics:)`` and
/// ``batchNormReLUConv2d(_:normWeight:normBias:epsilon:convWeight:stride:padding:dilation:groups:statistics:)``)
/// instead writes or adds its input gradient straight into the gradients the pieces accumulate:
/// no gradient of the whole view is written, read back and added piece by piece. The sums are the
/// same bits, added in the same order. This holds when every piece is the output of a recorded
/// operation and the view is channel-major; otherwise the gradient is split as usual.
/// The view's value is `value`; the pieces' values are not kept.
/// - `name`: the operation's name in messages.
/// - `pieces`: each piece's channels in the buffer and the variable whose value they hold; they
///   cover `channels` exactly, in order.
public func recordChannelView(
  _ value: Tensor, name: String, channels: Range<Int>, pieces: [(channels: Range<Int>, variable: Variable)]
) -> Variable {
  let offsets = pieces.map { $0.channels.lowerBound - channels.lowerBound..<$0.channels.upperBound - channels.lowerBound }
  let output = recordOperation(name, value, inputs: pieces.map(\.variable)) { g in
    offsets.map { slice(g, $0, alongAxis: 1) }
  }
  let producers = pieces.compactMap { piece in piece.variable.producer.map { ($0.entry, $0.index, piece.variable.shape) } }
  if output.producer != nil && producers.count == pieces.count { output.gradientSink = ChannelViewSink(pieces: producers) }
  return output
}

/// Where a channel view's consumer puts the view's gradient: into the gradients its pieces
/// accumulate.
final class ChannelViewSink {
  /// Where each piece's gradient accumulates, and its shape. Not the variables: they would keep
  /// the pieces' values alive (a feature buffer holds copies).
  let pieces: [(entry: TapeEntry, index: Int, shape: [Int])]

  init(pieces: [(entry: TapeEntry, index: Int, shape: [Int])]) { self.pieces = pieces }

  /// The pieces' accumulated gradients as one destination for the gradient of the view `x`, or
  /// nil when `x` is not channel-major.
  ///
  /// A piece with no gradient yet gets a new tensor to be overwritten; one whose gradient is its
  /// own dense, channel-major buffer is added to in place; any other (a view of a larger gradient,
  /// or shared) is copied to a new tensor first. Each becomes the piece's accumulated gradient.
  func destination(like x: Tensor) -> GradientDestination? {
    destination(shape: x.shape, strides: x.strides, dtype: x.dtype)
  }

  /// ``destination(like:)`` for a view of `shape`, `strides` and `dtype`: what a pullback captures
  /// instead of the view's value, which would keep its buffer.
  func destination(shape: [Int], strides: [Int], dtype: DType) -> GradientDestination? {
    guard Tensor.channelMajor(shape, dtype: dtype).strides == strides else { return nil }
    let parts = pieces.map { entry, index, pieceShape -> (tensor: Tensor, overwriting: Bool) in
      require(entry.backward != nil, "backward: \(entry.name) was already backpropagated through; its saved values are freed")
      var accumulated = entry.gradients[index]
      entry.gradients[index] = nil
      let part: (tensor: Tensor, overwriting: Bool)
      if accumulated == nil {
        part = (Tensor.channelMajor(pieceShape, dtype: dtype), true)
      } else if accumulated!.strides == strides && accumulated!.ownsItsStorage() {
        part = (accumulated!, false)
      } else {
        let copy = Tensor.channelMajor(pieceShape, dtype: dtype)
        copy.overwrite(with: accumulated!)
        part = (copy, false)
      }
      entry.gradients[index] = part.tensor
      return part
    }
    return GradientDestination(parts)
  }
}
