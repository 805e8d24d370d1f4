import TensorModule

// Softmax and log-softmax are primitives although they can be composed from max, exp, sum and
// log: attention takes a softmax of every score, and the composite made five passes and five
// allocations where the kernel makes one, and saved the intermediate exponentials for its
// pullback where this saves only the output.

/// Softmax along `axis`: e^x / Σ e^x, computed stably. Its pullback y (g - Σ g y) needs only the
/// output.
public func softmax(_ x: Variable, alongAxis axis: Int) -> Variable {
  let y = softmax(x.value, alongAxis: axis)
  return recordOperation("softmax", y, inputs: [x]) { [y] grad in
    [softmaxGradient(grad, output: y, alongAxis: axis, logarithm: false)]
  }
}

/// log(softmax(x)) along `axis`, computed stably. Its pullback g - e^y Σ g needs only the output.
public func logSoftmax(_ x: Variable, alongAxis axis: Int) -> Variable {
  let y = logSoftmax(x.value, alongAxis: axis)
  return recordOperation("logSoftmax", y, inputs: [x]) { [y] grad in
    [softmaxGradient(grad, output: y, alongAxis: axis, logarithm: true)]
  }
}
