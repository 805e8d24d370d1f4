import ArgumentParser
import Foundation

/// The `reprise` command-line tool.
@main
struct RepriseCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "reprise",
    abstract: "Train convolutional networks on the CPU with checkpointed autograd.",
    subcommands: [Train.self, Evaluate.self, Predict.self, Prune.self, Summary.self, Bench.self, Plan.self, Memory.self])

  /// Runs the command; a bad argument or an unreadable file ends it with one line on standard error
  /// and a non-zero status (help and version requests print as usual).
  static func main() {
    do {
      var command = try parseAsRoot()
      try command.run()
    } catch {
      let code = exitCode(for: error)
      guard code != .success else { exit(withError: error) }
      // One line: ArgumentParser lists the valid values of an option on lines of their own.
      let lines = fullMessage(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
      let choices = lines.dropFirst().filter { $0.hasPrefix("- ") }.map { $0.dropFirst(2) }
      let message = (lines.first ?? "\(error)") + (choices.isEmpty ? "" : " " + choices.joined(separator: ", "))
      FileHandle.standardError.write(Data("reprise: \(message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message)\n".utf8))
      Foundation.exit(code.rawValue)
    }
  }
}
