// swift-tools-version:6.0
import PackageDescription

let package = Package(
  name: "Reprise",
  products: [
    .library(name: "Reprise", targets: ["Reprise"]),
    .library(name: "RepriseDistributed", targets: ["RepriseDistributed"]),
    .executable(name: "reprise", targets: ["RepriseCLI"]),
    .executable(name: "char-transformer", targets: ["CharTransformer"]),
    .executable(name: "gru-classifier", targets: ["GRUClassifier"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
  ],
  targets: [
    .systemLibrary(
      name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
      providers: [.apt(["libopenblas-dev"])]),
    .target(name: "CKernels", path: "Sources/CKernels"),
    .target(
      name: "TensorModule",
      dependencies: ["COpenBLAS", "CKernels", .product(name: "RealModule", package: "swift-numerics")],
      path: "Sources/Tensor"),
    .target(name: "Autograd", dependencies: ["TensorModule"], path: "Sources/Autograd"),
    .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    .target(name: "NN", dependencies: ["Autograd", "CZlib"], path: "Sources/NN"),
    .target(name: "Models", dependencies: ["NN"], path: "Sources/Models"),
    .target(name: "Reprise", dependencies: ["TensorModule", "Autograd", "NN", "Models"], path: "Sources/Reprise"),
    // Distributed training on MPI, a module of its own so that the library builds without Open MPI.
    .systemLibrary(
      name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
    .target(name: "MPIShim", dependencies: ["CMPI"], path: "Sources/MPIShim"),
    .target(name: "RepriseDistributed", dependencies: ["Reprise", "CMPI", "MPIShim"], path: "Sources/Distributed"),
    .executableTarget(
      name: "RepriseCLI",
      dependencies: ["Reprise", "RepriseDistributed", "COpenBLAS", .product(name: "ArgumentParser", package: "swift-argument-parser")],
      path: "Sources/RepriseCLI"),
    .executableTarget(name: "CharTransformer", dependencies: ["Reprise"], path: "Examples/char-transformer"),
    .executableTarget(name: "GRUClassifier", dependencies: ["Reprise"], path: "Examples/gru-classifier"),
    .target(name: "TestSupport", dependencies: ["Reprise"], path: "Tests/TestSupport"),
    .testTarget(name: "TensorTests", dependencies: ["TestSupport"], path: "Tests/TensorTests"),
    .testTarget(name: "AutogradTests", dependencies: ["TestSupport"], path: "Tests/AutogradTests"),
    .testTarget(name: "NNTests", dependencies: ["TestSupport"], path: "Tests/NNTests"),
    .testTarget(name: "ModelsTests", dependencies: ["TestSupport"], path: "Tests/ModelsTests"),
    .testTarget(name: "DistributedTests", dependencies: ["TestSupport", "RepriseDistributed"], path: "Tests/DistributedTests"),
    .testTarget(name: "RepriseCLITests", dependencies: ["TestSupport", "RepriseCLI"], path: "Tests/RepriseCLITests"),
  ],
  swiftLanguageModes: [.v5]
)
