import ArgumentParser
import Foundation
import Reprise

/// `reprise summary`: the model's stages with output shapes, parameters and multiply-accumulates.
struct Summary: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Per-stage output shape, parameters and multiply-accumulates, and totals.")

  @OptionGroup var modelOptions: ModelOptions
  @Option(help: "Summarise the network this state file records (a pruned one, say), or the model options' with these weights checked.")
  var weights: String?
  @Option(help: "Input size [C, H, W] as C,H,W (default: the model's natural size, 3,32,32 for CIFAR models and 3,224,224 for ImageNet ones).") var inputSize: String?
  @Flag(help: "Print one JSON object with `parameters`, `macs` (as the model is defined), `computedMacs` (as Reprise computes it) and the stages.")
  var json = false

  func validate() throws {
    if let weights { try readable("--weights", weights) }
  }

  func run() throws {
    let state = try weights.map(SavedModel.init)
    let shape = try modelOptions.parsedInputShape(inputSize, natural: state?.architecture?.naturalInputShape)
    let model = try withoutRecording {
      try modelOptions.make(for: state, inputShape: shape, classCount: modelOptions.classes)
    }
    try state?.load(into: model)
    let label = state?.architecture?.label ?? modelOptions.label
    let rows = model.summary(inputShape: [1] + shape)
    let macs = rows.reduce(0) { $0 + $1.multiplyAccumulates }, computed = rows.reduce(0) { $0 + $1.computedMultiplyAccumulates }
    if json {
      struct Stage: Encodable { var name: String, outputShape: [Int], parameters: Int, macs: Int, computedMacs: Int }
      struct Output: Encodable { var model: String, inputShape: [Int], parameters: Int, macs: Int, computedMacs: Int, stages: [Stage] }
      try printJSON(Output(
        model: label, inputShape: shape, parameters: model.parameterCount, macs: macs, computedMacs: computed,
        stages: rows.map {
          Stage(name: $0.name, outputShape: $0.outputShape, parameters: $0.parameters, macs: $0.multiplyAccumulates,
            computedMacs: $0.computedMultiplyAccumulates)
        }))
      return
    }
    let nameWidth = max(24, rows.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
    func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
    print(pad("stage", nameWidth) + "  " + pad("output shape", 20) + left("parameters", 14) + left("MACs", 16) + left("computed", 16))
    for r in rows {
      print(
        pad(r.name, nameWidth) + "  " + pad("\(r.outputShape)", 20) + left(grouped(r.parameters), 14)
          + left(grouped(r.multiplyAccumulates), 16) + left(grouped(r.computedMultiplyAccumulates), 16))
    }
    print("total: \(grouped(model.parameterCount)) parameters, \(grouped(macs)) multiply-accumulates for input \([1] + shape)")
    if computed != macs {
      print("Reprise computes \(grouped(computed)) of them: some layers compute the same function with less work")
    }
  }
}

/// `1234567` as `1,234,567`.
func grouped(_ n: Int) -> String {
  let digits = String(n.magnitude)
  var out = ""
  for (i, c) in digits.enumerated() {
    if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
    out.append(c)
  }
  return (n < 0 ? "-" : "") + out
}
