import Foundation
import XCTest

/// Asserts that `body` stops the program (a precondition or fatal error) with a message that
/// contains every string in `fragments`.
///
/// The test process runs the calling test again in a child process, where `body` runs for real;
/// the parent checks that the child died and what it printed. This is how the tests prove that
/// programmer errors stop with messages that name the operation and the shapes.
public func assertStops(
  withMessageContaining fragments: [String], in testCase: XCTestCase,
  file: StaticString = #filePath, line: UInt = #line, _ body: () -> Void
) {
  let key = "\(file):\(line)"
  if ProcessInfo.processInfo.environment["REPRISE_DEATH_TEST"] == key {
    body()
    exit(97)  // it did not stop
  }
  let testName = testCase.name.split(whereSeparator: { " .[]-".contains($0) }).filter { !$0.isEmpty }
  let suite = String(reflecting: type(of: testCase))
  let process = Process()
  process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
  process.arguments = ["\(suite)/\(testName.last ?? "")"]
  var environment = ProcessInfo.processInfo.environment
  environment["REPRISE_DEATH_TEST"] = key
  process.environment = environment
  let pipe = Pipe()
  process.standardError = pipe
  process.standardOutput = pipe
  do { try process.run() } catch { return XCTFail("could not start the child process: \(error)", file: file, line: line) }
  let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
  process.waitUntilExit()
  XCTAssert(
    process.terminationStatus != 97 && !(process.terminationReason == .exit && process.terminationStatus == 0),
    "the code did not stop (child exit \(process.terminationStatus))", file: file, line: line)
  for fragment in fragments where !printed.contains(fragment) {
    XCTFail("the message does not contain \"\(fragment)\"; the child printed:\n\(printed.suffix(2000))", file: file, line: line)
  }
}
