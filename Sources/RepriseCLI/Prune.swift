import ArgumentParser
import Foundation
import Reprise

/// `reprise prune`: network slimming's pruning step, which writes a thinner network that records
/// its own architecture.
struct Prune: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Remove the batch-norm channels of smallest |γ| (network slimming; train with --sparsity first) and write the thinner network, which records its architecture.")

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "The model state to prune (a DenseNet, or a resnet20, resnet50 or seresnet56 with --conv standard).") var weights: String
  @Option(help: "The fraction of the batch-norm channels to remove, in [0, 1): one threshold on |γ| over the whole network.") var ratio: Double
  @Option(help: "Where to write the pruned network's state.") var output: String
  @Option(help: "Channels of the input images, for a state file that does not record its network.") var inputChannels = 3
  @Option(help: "Input size [C, H, W] as C,H,W for the multiply-accumulates reported (default: the model's natural size).") var inputSize: String?

  func validate() throws {
    try readable("--weights", weights)
    try writable("--output", output)
    guard (0..<1).contains(ratio) else { throw ValidationError("--ratio must be in [0, 1), got \(ratio)") }
    try check("--input-channels", inputChannels, in: 1...4096)
  }

  func run() throws {
    let state = try SavedModel(weights)
    let model =
      state.architecture == nil
      ? try modelOptions.make(inputChannels: inputChannels, classCount: modelOptions.classes ?? modelOptions.model.defaultClassCount)
      : try modelOptions.make(for: state, inputShape: nil, classCount: nil)
    try state.load(into: model)
    let pruned: (network: any Network, report: PruningReport)
    switch model {
    case let model as DenseNet: pruned = model.pruned(ratio: ratio)
    case let model as ResNet where model.configuration.convolution == .standard: pruned = model.pruned(ratio: ratio)
    default: throw ValidationError("prune takes DenseNets and ResNets (resnet20, resnet50, seresnet56) with --conv standard")
    }
    // The pruned model is a DenseNet or a standard ResNet, which an architecture describes.
    let shape = try modelOptions.parsedInputShape(inputSize, natural: Architecture(of: model)!.naturalInputShape)
    func macs(_ network: any Network) -> Int { network.summary(inputShape: [1] + shape).reduce(0) { $0 + $1.multiplyAccumulates } }
    let (before, after) = (macs(model), macs(pruned.network))
    let architecture = Architecture(of: pruned.network)!  // a DenseNet or a standard ResNet, as above
    try pruned.network.saveState(to: output, metadata: architecture.metadata)
    let report = pruned.report
    print(String(format: "Removed %d of %d batch-norm channels (|γ| <= %.4g)", report.removed, report.channels, report.threshold))
    print(String(format: "parameters %@ -> %@ (-%.1f%%), multiply-accumulates for input %@ %@ -> %@ (-%.1f%%)",
      grouped(model.parameterCount), grouped(pruned.network.parameterCount), 100 * (1 - Double(pruned.network.parameterCount) / Double(model.parameterCount)),
      "\([1] + shape)", grouped(before), grouped(after), 100 * (1 - Double(after) / Double(max(before, 1)))))
    print("Wrote \(architecture.label) to \(output)")
  }
}
