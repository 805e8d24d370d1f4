// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "Reprise",
  products: [
    .library(name: "Reprise", targets: ["Reprise"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
  ],
  targets: [
    .systemLibrary(
      name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .target(
      name: "TensorModule",
      dependencies: ["COpenBLAS", .product(name: "RealModule", package: "swift-numerics")],
      path: "Sources/Tensor"),
    .target(name: "Autograd", dependencies: ["TensorModule"], path: "Sources/Autograd"),
    .target(name: "Reprise", dependencies: ["TensorModule", "Autograd"], path: "Sources/Reprise"),
    .target(name: "TestSupport", dependencies: ["Reprise"], path: "Tests/TestSupport"),
    .testTarget(name: "TensorTests", dependencies: ["TestSupport"], path: "Tests/TensorTests"),
    .testTarget(name: "AutogradTests", dependencies: ["TestSupport"], path: "Tests/AutogradTests"),
  ],
  swiftLanguageModes: [.v5]
)
