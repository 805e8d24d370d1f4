import ArgumentParser

/// The `reprise` command-line tool.
@main
struct RepriseCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reprise",
    abstract: "Train convolutional networks on the CPU with checkpointed autograd.",
    subcommands: [Train.self, Evaluate.self, Predict.self, Summary.self, Bench.self])
}
