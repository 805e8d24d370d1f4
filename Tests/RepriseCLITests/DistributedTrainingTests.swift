import Foundation
import Reprise
import TestSupport
import XCTest

/// `reprise train --distributed` under `mpirun`: two processes take the step one process takes,
/// with and without synchronized batch normalisation and under every checkpoint plan; they
/// evaluate exactly as one; a resumed run continues exactly; a killed process ends the run.
///
/// DenseNet-BC-10 on 48 random 1x8x8 images, batches of 16: a few seconds per run.
final class DistributedTrainingTests: XCTestCase {
  var directory: String!
  let common = ["--dataset", "data.safetensors", "--depth", "10", "--batch-size", "16", "--no-augment", "--threads", "1"]

  override func setUpWithError() throws {
    directory = try makeTemporaryDirectory("reprise-distributed")
    var random = RandomGenerator(seed: 5)
    let images = Tensor(randomNormal: [48, 1, 8, 8], using: &random)
    try SafeTensors.write(
      [("images", SafeTensors.Entry(images)), ("labels", SafeTensors.Entry(integers: (0..<48).map { Int64($0 % 3) }, shape: [48]))],
      to: directory + "/data.safetensors")
  }

  override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

  /// One process of `reprise`.
  func reprise(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> ProgramResult {
    let result = try runProgram(repriseBinary, arguments, in: directory)
    XCTAssertEqual(result.status, 0, "reprise \(arguments): \(result.err)", file: file, line: line)
    return result
  }

  /// `processes` processes of `reprise` under mpirun; over TCP on loopback when `tcp`, else over
  /// shared memory.
  func mpirun(
    _ processes: Int, _ arguments: [String], tcp: Bool = false, expectSuccess: Bool = true, started: ((Process) -> Void)? = nil,
    file: StaticString = #filePath, line: UInt = #line
  ) throws -> ProgramResult {
    // Root in CI containers, two processes on two cores, and no cross-memory attach in containers.
    var options = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "\(processes)", "-x", "OMPI_MCA_btl_vader_single_copy_mechanism=none"]
    if tcp { options += ["--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo"] }
    let result = try runProgram(URL(fileURLWithPath: "/usr/bin/env"), options + [repriseBinary.path] + arguments, in: directory, started: started)
    if expectSuccess { XCTAssertEqual(result.status, 0, "mpirun \(arguments): \(result.out) \(result.err)", file: file, line: line) }
    return result
  }

  /// The tensors of a state file.
  func state(_ name: String) throws -> [String: Tensor] {
    try SafeTensors.read(directory + "/" + name).entries.compactMapValues { try? $0.finiteFloatTensor(named: "") }
  }

  /// Asserts that two state files hold the same tensors within `tolerance` relative to each
  /// tensor's largest magnitude, for the keys `including` accepts.
  func assertSameState(
    _ a: String, _ b: String, tolerance: Double, including: (String) -> Bool = { _ in true },
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    let (x, y) = (try state(a), try state(b))
    XCTAssertEqual(Set(x.keys), Set(y.keys), file: file, line: line)
    var compared = 0
    for (key, t) in x where including(key) {
      guard let u = y[key] else { continue }
      let (p, q) = (t.scalars(as: Double.self), u.scalars(as: Double.self))
      let scale = max(p.map(abs).max() ?? 0, 1e-30)
      let worst = zip(p, q).map { abs($0 - $1) }.max() ?? 0
      XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(key): \(a) and \(b) differ by \(worst / scale) relative", file: file, line: line)
      compared += 1
    }
    XCTAssertGreaterThan(compared, 10, file: file, line: line)
  }

  func testTwoProcessesWithSynchronizedBatchNormEqualOneProcessUnderEveryPlan() throws {
    _ = try reprise(["train"] + common + ["--max-steps", "3", "--save", "one.safetensors"])
    let plans: [(String, [String], Bool)] = [
      ("memory-efficient", [], false), ("plain", ["--no-memory-efficient"], true), ("segments", ["--checkpoint-segments", "2"], false),
      ("planned", ["--memory-budget", "1.5MiB"], false),
    ]
    for (name, plan, tcp) in plans {
      let run = try mpirun(2, ["train", "--distributed", "--sync-batch-norm"] + common + plan + ["--max-steps", "3", "--save", "\(name).safetensors"], tcp: tcp)
      XCTAssertEqual(run.out.components(separatedBy: "Saved the model").count, 2, "one process alone reports: \(run.out)")
      // Weights and running statistics alike; the sums are added in another order.
      try assertSameState("one.safetensors", "\(name).safetensors", tolerance: 1e-5)
    }
  }

  func testTwoProcessesWithoutSynchronizationEqualOneProcessNormalisingEachHalf() throws {
    _ = try reprise(["train"] + common + ["--max-steps", "3", "--micro-batches", "2", "--save", "halves.safetensors"])
    for overlap in ["thread", "polling", "none"] {
      _ = try mpirun(2, ["train", "--distributed", "--gradient-overlap", overlap] + common + ["--max-steps", "3", "--save", "\(overlap).safetensors"])
      // Running statistics differ by design: each process's are averaged, one process updates them per half.
      try assertSameState("halves.safetensors", "\(overlap).safetensors", tolerance: 1e-5) { !$0.contains("running") && !$0.contains("tracked") }
    }
    // Network slimming's sparsity term is added to the reduced gradients, as to the accumulated ones.
    _ = try reprise(["train"] + common + ["--max-steps", "3", "--micro-batches", "2", "--sparsity", "0.01", "--save", "halves-sparse.safetensors"])
    _ = try mpirun(2, ["train", "--distributed"] + common + ["--max-steps", "3", "--sparsity", "0.01", "--save", "sparse.safetensors"])
    try assertSameState("halves-sparse.safetensors", "sparse.safetensors", tolerance: 1e-5) { !$0.contains("running") && !$0.contains("tracked") }
    let scale = "features.denseblock1.denselayer1.norm1.weight"
    let (plain, sparse) = (try SafeTensors.read(directory + "/halves.safetensors").entries[scale]!, try SafeTensors.read(directory + "/halves-sparse.safetensors").entries[scale]!)
    XCTAssertNotEqual(try plain.finiteFloatTensor(named: scale, path: "").scalars(as: Double.self), try sparse.finiteFloatTensor(named: scale, path: "").scalars(as: Double.self))
  }

  func testDistributedEvaluationEqualsOneProcessExactly() throws {
    _ = try reprise(["train"] + common + ["--max-steps", "2", "--save", "w.safetensors"])
    let evaluation = ["eval", "--dataset", "data.safetensors", "--depth", "10", "--weights", "w.safetensors", "--batch-size", "7", "--threads", "1"]
    let one = try reprise(evaluation)
    for processes in [2, 3] {
      let many = try mpirun(processes, evaluation + ["--distributed"])
      XCTAssertEqual(many.out, one.out, "\(processes) processes")
    }
    // An ensemble's too.
    _ = try reprise(["train"] + common + ["--max-steps", "1", "--save", "w1.safetensors"])
    let ensemble = ["eval", "--dataset", "data.safetensors", "--weights", "w.safetensors", "w1.safetensors", "--batch-size", "7", "--threads", "1"]
    let oneEnsemble = try reprise(ensemble)
    XCTAssert(oneEnsemble.out.contains("ensemble of 2"), oneEnsemble.out)
    XCTAssertEqual(try mpirun(2, ensemble + ["--distributed"]).out, oneEnsemble.out)
  }

  func testResumedDistributedRunContinuesExactly() throws {
    let run = ["train", "--distributed", "--sync-batch-norm", "--epochs", "2", "--checkpoint", "state.safetensors"] + common
    _ = try mpirun(2, run + ["--save", "whole.safetensors"])
    _ = try mpirun(2, run + ["--max-steps", "3", "--save", "first.safetensors"])
    _ = try mpirun(2, run + ["--resume", "state.safetensors", "--save", "resumed.safetensors"])
    try assertSameState("whole.safetensors", "resumed.safetensors", tolerance: 0)
    // Another world size is refused: the run would not be the same.
    let other = try mpirun(3, run + ["--resume", "state.safetensors"], expectSuccess: false)
    XCTAssertNotEqual(other.status, 0)
    XCTAssert(other.err.contains("processes 3 (the checkpoint's: 2)"), other.err)
  }

  /// Two "machines": network namespaces joined by a veth pair, one process in each, launched by
  /// mpirun through an agent that stands in for ssh and talking over TCP only, the path of a
  /// multi-machine run. Needs root and iproute2 (as in CI).
  func testTwoHostsInNetworkNamespacesTrainAsOneProcess() throws {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    else { throw XCTSkip("network namespaces need root and iproute2") }
    let id = getpid() % 100_000, (a, b) = ("rpa\(id)", "rpb\(id)"), subnet = "10.\(77 + id % 100).\(id % 250)"
    let ip = URL(fileURLWithPath: "/usr/bin/env")
    func sh(_ command: String) throws {
      let result = try runProgram(ip, ["sh", "-c", command], in: directory)
      XCTAssertEqual(result.status, 0, "\(command): \(result.err)")
    }
    defer { _ = try? runProgram(ip, ["sh", "-c", "ip netns del \(a); ip netns del \(b)"], in: directory) }
    try sh(
      "ip netns add \(a) && ip netns add \(b) && ip link add v\(a) type veth peer name v\(b) && ip link set v\(a) netns \(a) "
        + "&& ip link set v\(b) netns \(b) && ip -n \(a) addr add \(subnet).1/24 dev v\(a) && ip -n \(b) addr add \(subnet).2/24 dev v\(b) "
        + "&& ip -n \(a) link set v\(a) up && ip -n \(b) link set v\(b) up && ip -n \(a) link set lo up && ip -n \(b) link set lo up")
    try "\(subnet).1 slots=1\n\(subnet).2 slots=1\n".write(toFile: directory + "/hosts", atomically: true, encoding: .utf8)
    let agent = "#!/bin/sh\nhost=\"$1\"; shift\ncase \"$host\" in \(subnet).1) ns=\(a) ;; \(subnet).2) ns=\(b) ;; *) exit 1 ;; esac\nexec ip netns exec \"$ns\" sh -c \"$*\"\n"
    try agent.write(toFile: directory + "/agent.sh", atomically: true, encoding: .utf8)
    try sh("chmod +x agent.sh")
    _ = try reprise(["train"] + common + ["--max-steps", "3", "--save", "one.safetensors"])
    let mpirun: [String] = [
      "ip", "netns", "exec", a, "mpirun", "--allow-run-as-root", "-np", "2", "--hostfile", "hosts", "--mca", "plm_rsh_agent", directory! + "/agent.sh",
      "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", subnet + ".0/24", "--mca", "oob_tcp_if_include", subnet + ".0/24",
      "-wdir", directory!, repriseBinary.path, "train", "--distributed", "--sync-batch-norm",
    ]
    let run = try runProgram(ip, mpirun + common + ["--max-steps", "3", "--save", "hosts.safetensors"], in: directory)
    XCTAssertEqual(run.status, 0, run.out + run.err)
    try assertSameState("one.safetensors", "hosts.safetensors", tolerance: 1e-5)
  }

  func testTrainingUnderMpirunWithoutDistributedIsRefused() throws {
    let run = try mpirun(2, ["train"] + common + ["--max-steps", "1"], expectSuccess: false)
    XCTAssertNotEqual(run.status, 0)
    XCTAssert(run.err.contains("without --distributed: each would train alone"), run.err)
  }

  func testAKilledProcessEndsTheRun() throws {
    let started = Date()
    var killed = false
    let result = try mpirun(2, ["train", "--distributed", "--epochs", "100000"] + common, expectSuccess: false) { mpirun in
      // Once both processes train, kill rank 1's.
      for _ in 0..<300 where !killed {
        Thread.sleep(forTimeInterval: 0.1)
        let children = (try? runProgram(URL(fileURLWithPath: "/usr/bin/pgrep"), ["-P", "\(mpirun.processIdentifier)"], in: self.directory).out) ?? ""
        let pids = children.split(separator: "\n").compactMap { Int32($0) }
        if pids.count == 2 && Date().timeIntervalSince(started) > 4 {
          kill(pids[1], SIGKILL)
          killed = true
        }
      }
    }
    XCTAssert(killed, "the processes did not start")
    XCTAssertNotEqual(result.status, 0)
    XCTAssertLessThan(Date().timeIntervalSince(started), 60, "the run went on after a process died")
    XCTAssert(result.err.contains("signal 9"), result.err)
  }
}
