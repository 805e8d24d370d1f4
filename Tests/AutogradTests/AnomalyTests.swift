import Reprise
import TestSupport
import XCTest

final class AnomalyTests: XCTestCase {
  func testForwardNaNNamesTheOperation() {
    assertStops(withMessageContaining: ["anomaly: log produced", "forward pass", "shape [3]", "index [1]"], in: self) {
      let x = Variable(Tensor([1, -1, 2] as [Float], shape: [3]), requiresGrad: true)
      withAnomalyDetection { _ = log(x) }
    }
  }

  func testBackwardInfinityNamesTheOperation() {
    assertStops(withMessageContaining: ["anomaly: sqrt produced", "backward pass"], in: self) {
      let x = Variable(Tensor([0, 4] as [Float], shape: [2]), requiresGrad: true)
      withAnomalyDetection { sum(sqrt(x)).backward() }
    }
  }

  /// Without the mode, the same computation runs to the end (the check costs nothing by default).
  func testOffByDefault() {
    let x = Variable(Tensor([0, 4] as [Float], shape: [2]), requiresGrad: true)
    sum(sqrt(x)).backward()
    XCTAssertEqual(x.grad!.scalars(as: Float.self)[0], .infinity)
  }
}
