import Reprise
import XCTest

/// The example in README.md, kept compiling and correct.
final class ReadmeExampleTests: XCTestCase {
  func testReadmeExample() {
    // --- README example begins ---
    let x = Variable(Tensor(randomNormal: [2, 3, 8, 8], dtype: .float64), requiresGrad: true)
    let w = Variable(Tensor(randomNormal: [4, 3, 3, 3], dtype: .float64), requiresGrad: true)
    let block: (Variable) -> Variable = { relu(conv2d($0, w, padding: 1)) }

    // A checkpoint region keeps only its input after the forward pass and replays the body in backward.
    let loss = mean(checkpoint(x, block))
    loss.backward()
    print(w.grad!.shape)  // [4, 3, 3, 3]

    // Check the same gradients numerically: central differences in Float64.
    let result = checkGradients(at: [x, w]) { checkpoint(x, block) }
    print(result)  // gradient check passed: 0 of 492 elements out of tolerance; ...
    // --- README example ends ---
    XCTAssertEqual(w.grad!.shape, [4, 3, 3, 3])
    XCTAssertTrue(result.passed, "\(result)")
    XCTAssertEqual(result.compared, 2 * 3 * 8 * 8 + 4 * 3 * 3 * 3)
  }
}

/// x³, the custom operation of the documentation's "Custom operations" article.
private func cube(_ x: Variable) -> Variable {
  let v = x.value
  return recordOperation("cube", v * v * v, inputs: [x]) { gradient in [gradient * v * v * 3.0] }
}

/// The article's operation passes its gradient check, in and out of a checkpoint region.
final class CustomOperationArticleTests: XCTestCase {
  func testCubePassesItsGradientCheckInAndOutOfARegion() {
    let x = Variable(Tensor(randomNormal: [3, 5], dtype: .float64), requiresGrad: true)
    XCTAssert(checkGradients(at: [x]) { cube(x) }.passed)
    XCTAssert(checkGradients(at: [x]) { checkpoint(x) { cube(relu($0)) } }.passed)
  }
}
