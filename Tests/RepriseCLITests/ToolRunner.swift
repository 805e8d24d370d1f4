import Foundation

/// The `reprise` tool built beside the test bundle.
let repriseBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("reprise")

/// A finished program: its status, whether it exited or was killed, and what it printed.
struct ProgramResult {
  var status: Int32
  var reason: Process.TerminationReason
  var out: String
  var err: String
}

/// Runs `executable` with `arguments` in `directory` to the end; its output goes through files, so
/// a program that fills one stream while the other is read cannot block.
func runProgram(_ executable: URL, _ arguments: [String], in directory: String, started: ((Process) -> Void)? = nil) throws -> ProgramResult {
  let process = Process()
  process.executableURL = executable
  process.arguments = arguments
  process.currentDirectoryURL = URL(fileURLWithPath: directory)
  // Without what MPI put in this process's environment, if a test here started MPI (a singleton):
  // an mpirun that inherits it takes itself for a rank of that run and fails.
  let prefixes = ["OMPI_", "PMIX_", "OPAL_", "ORTE_", "PRTE_"]
  process.environment = ProcessInfo.processInfo.environment.filter { key, _ in !prefixes.contains { key.hasPrefix($0) } }
  let name = UUID().uuidString
  let (outPath, errPath) = (directory + "/.\(name).out", directory + "/.\(name).err")
  // A file that could not be created fails the opening below, with the reason.
  _ = FileManager.default.createFile(atPath: outPath, contents: nil)
  _ = FileManager.default.createFile(atPath: errPath, contents: nil)
  defer { for path in [outPath, errPath] { try? FileManager.default.removeItem(atPath: path) } }
  process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
  process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
  try process.run()
  started?(process)
  process.waitUntilExit()
  let read = { (path: String) in String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
  return ProgramResult(status: process.terminationStatus, reason: process.terminationReason, out: read(outPath), err: read(errPath))
}
