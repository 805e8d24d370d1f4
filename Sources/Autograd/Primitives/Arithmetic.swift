import TensorModule

// Element-wise arithmetic primitives. Gradients come back in the broadcast shape; the tape sums
// them down to each input's shape (Backward.swift, `unbroadcast`).

/// a + b, with broadcasting.
///
/// Its pullback reads neither the operands nor the sum, so a checkpoint replay computes the sum
/// only if something reads it (optimisation A): a residual sum that only leaves its region is not
/// recomputed, nor the values only it reads, such as the normalised map of the branch's last
/// batch normalisation.
public func add(_ a: Variable, _ b: Variable) -> Variable {
  recordOperation("add", deferring: { a.value + b.value }, shape: broadcastShape(a, b), dtype: a.dtype, inputs: [a, b]) { grad in
    [grad, grad]
  }
}

/// The shape of the element-wise result of `a` and `b`, for a deferred value. Operands that do not
/// broadcast get `a`'s shape here and the element-wise operation's own error when it runs, which
/// the first pass always does (optimisation A defers only in replays).
private func broadcastShape(_ a: Variable, _ b: Variable) -> [Int] { Shape.broadcast(a.shape, b.shape) ?? a.shape }

/// relu(a + b), with broadcasting: one pass forward instead of two, and nothing saved but the
/// output (the sum's pullback passes the gradient through unchanged, so relu's pullback, applied
/// once, is the gradient of both inputs). ResNet's blocks end with it.
public func addReLU(_ a: Variable, _ b: Variable) -> Variable {
  let y = TensorModule.addReLU(a.value, b.value)
  return recordOperation("addReLU", y, inputs: [a, b]) { [y] grad in
    let g = reluBackward(grad, output: y)
    return [g, g]
  }
}

/// relu(a · scale + b), `scale` broadcast to `a`: with one factor per image and channel ([N, C, 1,
/// 1] for feature maps [N, C, H, W]), squeeze-and-excitation's scaling and the residual sum and
/// ReLU after it in one pass forward and one back, where `addReLU(a * scale, b)` takes two forward
/// and four back; the same bits. Saves its inputs, not its output (a residual block's `b`, its
/// input, is kept by its first convolution anyway; see `addReLUBackward(_:_:scaledBy:_:)`).
public func addReLU(_ a: Variable, scaledBy scale: Variable, _ b: Variable) -> Variable {
  let (x, s, r) = (a.value, scale.value, b.value)
  return recordOperation("addReLU", TensorModule.addReLU(x, scaledBy: s, r), inputs: [a, scale, b]) { grad in
    let g = addReLUBackward(grad, x, scaledBy: s, r)
    return [g.a, g.scale, g.b]
  }
}

/// a * b, with broadcasting.
///
/// When `a` is a channel view of a feature buffer and `b` a constant broadcast to it (a dropout
/// mask), the gradient of `a` goes straight into the gradients of the view's pieces
/// (``recordChannelView(_:name:channels:pieces:)``): the same bits, one pass instead of a product
/// written, read back and added piece by piece.
public func multiply(_ a: Variable, _ b: Variable) -> Variable {
  let needA = a.requiresGrad, needB = b.requiresGrad
  let x = needB ? a.value : nil, y = needA ? b.value : nil
  let sink = needB ? nil : a.gradientSink, view = (shape: a.shape, strides: a.value.strides, dtype: a.dtype)
  return recordOperation("multiply", a.value * b.value, inputs: [a, b]) { grad in
    if let sink, let y, grad.shape == view.shape,
      let destination = sink.destination(shape: view.shape, strides: view.strides, dtype: view.dtype)
    {
      TensorModule.multiply(grad, y, into: destination)
      checkSent(destination, "multiply")
      return [nil, nil]
    }
    return [y.map { grad * $0 }, x.map { grad * $0 }]
  }
}

/// -x.
public func negate(_ x: Variable) -> Variable {
  recordOperation("negate", -x.value, inputs: [x]) { grad in [-grad] }
}

/// 1 / x.
public func reciprocal(_ x: Variable) -> Variable {
  let y = TensorModule.reciprocal(x.value)
  return recordOperation("reciprocal", y, inputs: [x]) { [y] grad in [-(grad * y * y)] }
}

/// x^exponent for a constant exponent.
public func pow(_ x: Variable, _ exponent: Double) -> Variable {
  let value = x.value
  return recordOperation("pow", TensorModule.pow(value, exponent), inputs: [x]) { [value] grad in
    [grad * TensorModule.pow(value, exponent - 1) * exponent]
  }
}

/// Elements of `a` where `condition` is non-zero and of `b` elsewhere; the condition is a constant.
public func select(_ condition: Tensor, _ a: Variable, _ b: Variable) -> Variable {
  let zero = Tensor(0, dtype: a.dtype)
  return recordOperation("select", TensorModule.select(condition, a.value, b.value), inputs: [a, b]) { grad in
    [TensorModule.select(condition, grad, zero), TensorModule.select(condition, zero, grad)]
  }
}
