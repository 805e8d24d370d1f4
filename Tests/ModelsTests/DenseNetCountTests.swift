import Reprise
import XCTest

/// Exact trainable-parameter counts of every DenseNet , as the papers and reference implementations give them (docs/models.md).
final class DenseNetCountTests: XCTestCase {
  func count(_ c: DenseNetConfiguration) -> Int { withoutRecording { DenseNet(c).parameterCount } }

  func testCIFARCounts() throws {
    XCTAssertEqual(count(try .cifar(depth: 100, growthRate: 12, bottleneck: true)), 769_162)
    XCTAssertEqual(count(try .cifar(depth: 100, growthRate: 12, bottleneck: true, classCount: 100)), 800_032)
    XCTAssertEqual(count(try .cifar(depth: 250, growthRate: 24, bottleneck: true)), 15_324_406)
    XCTAssertEqual(count(try .cifar(depth: 190, growthRate: 40, bottleneck: true)), 25_624_430)
    XCTAssertEqual(count(try .cifar(depth: 40, growthRate: 12, bottleneck: false)), 1_019_722)
    XCTAssertEqual(count(try .cifar(depth: 100, growthRate: 12, bottleneck: false)), 6_979_642)
    XCTAssertEqual(count(try .cifar(depth: 100, growthRate: 24, bottleneck: false)), 27_249_082)
    XCTAssertEqual(count(try .cifar(depth: 40, growthRate: 12, bottleneck: false, initialChannels: 24, classCount: 100)), 1_100_428)
    XCTAssertEqual(count(try .cifar(depth: 40, growthRate: 36, bottleneck: true)), 1_542_682)
  }

  func testImageNetCounts() {
    XCTAssertEqual(count(.densenet121), 7_978_856)
    XCTAssertEqual(count(.densenet169), 14_149_480)
    XCTAssertEqual(count(.densenet201), 20_013_928)
    XCTAssertEqual(count(.densenet161), 28_681_000)
    XCTAssertEqual(count(.densenet264), 33_337_704)
    XCTAssertEqual(count(.densenet264k48), 72_686_632)
    XCTAssertEqual(count(.densenet232), 55_570_984)
  }

  func testInvalidDepthThrows() {
    XCTAssertThrowsError(try DenseNetConfiguration.cifar(depth: 41, growthRate: 12, bottleneck: true)) { error in
      XCTAssertEqual("\(error)", "DenseNet-BC depth 41 is not 4 + 6n")
    }
  }
}
