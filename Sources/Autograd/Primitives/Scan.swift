import TensorModule

/// The running sum along `axis`; its pullback is the running sum of the gradient from the other end.
public func cumulativeSum(_ x: Variable, alongAxis axis: Int) -> Variable {
  recordOperation("cumulativeSum", x.value.cumulativeSum(alongAxis: axis), inputs: [x]) { grad in
    [grad.cumulativeSum(alongAxis: axis, reverse: true)]
  }
}
