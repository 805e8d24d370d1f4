import TensorModule

/// The running sum along `axis`; its pullback is the running sum of the gradient from the other end.
public func cumulativeSum(_ x: Variable, alongAxis axis: Int) -> Variable {
  recordOperation("cumulativeSum", cumulativeSum(x.value, alongAxis: axis), inputs: [x]) { grad in
    [cumulativeSum(grad, alongAxis: axis, reverse: true)]
  }
}
