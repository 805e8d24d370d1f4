import Foundation
import Reprise
import TestSupport
import XCTest

/// Network slimming and snapshot ensembles from the command line.
extension CommandLineTests {
  /// The float entries of a state file, by name.
  func state(_ name: String) throws -> [String: [Double]] {
    let entries = try SafeTensors.read(directory + "/" + name).entries.filter { $0.value.dtype.hasPrefix("F") }
    return try entries.mapValues { try $0.finiteFloatTensor(named: "", path: name).scalars(as: Double.self) }
  }

  func testSnapshotsAreTheModelsAtTheCycleEndsAndAnEnsembleAveragesTheirSoftmax() throws {
    let data = try dataSet("tiny.safetensors", count: 12)
    // 3 steps per epoch, 6 in all: cycles of 2 steps.
    let common = ["--dataset", data, "--depth", "10", "--batch-size", "4", "--threads", "1", "--epochs", "2", "--schedule", "cyclic-cosine", "--cycles", "3"]
    let run = try reprise(["train"] + common + ["--snapshots", "snaps", "--save", "final.safetensors"])
    XCTAssertEqual(run.status, 0, run.err)
    XCTAssert(run.out.contains("Saved snapshot 2 (step 4)"), run.out)
    XCTAssertEqual(try state("snaps/snapshot-3.safetensors"), try state("final.safetensors"))
    // The first snapshot is the model after the first cycle's two steps, running statistics included.
    XCTAssertEqual(try reprise(["train"] + common + ["--max-steps", "2", "--save", "two.safetensors"]).status, 0)
    XCTAssertEqual(try state("snaps/snapshot-1.safetensors"), try state("two.safetensors"))
    XCTAssertNotEqual(try state("snaps/snapshot-1.safetensors"), try state("snaps/snapshot-2.safetensors"))

    let snapshots = (1...3).map { "snaps/snapshot-\($0).safetensors" }
    let ensemble = try reprise(["eval", "--dataset", data, "--weights"] + snapshots)
    XCTAssertEqual(ensemble.status, 0, ensemble.err)
    for path in snapshots {
      let single = try reprise("eval", "--dataset", data, "--weights", path)
      XCTAssert(ensemble.out.contains("\(path): \(single.out)"), "\(ensemble.out) lacks \(single.out)")
    }
    XCTAssert(ensemble.out.contains("ensemble of 3: test loss"), ensemble.out)

    var random = RandomGenerator(seed: 1)
    try SafeTensors.write([("input", SafeTensors.Entry(Tensor(randomNormal: [3, 1, 8, 8], using: &random)))], to: directory + "/input.safetensors")
    var probabilities: [Tensor] = []
    for (i, path) in snapshots.enumerated() {
      XCTAssertEqual(try reprise("predict", "--weights", path, "--input", "input.safetensors", "--output", "p\(i).safetensors").status, 0)
      let logits = try SafeTensors.read(directory + "/p\(i).safetensors").entries["logits"]!.finiteFloatTensor(named: "logits", path: "")
      probabilities.append(softmax(logits.converted(to: .float64), alongAxis: 1))
    }
    let predict = try reprise(["predict", "--input", "input.safetensors", "--output", "mean.safetensors", "--weights"] + snapshots)
    XCTAssertEqual(predict.status, 0, predict.err)
    let mean = try SafeTensors.read(directory + "/mean.safetensors").entries
    let expected = (probabilities[0] + probabilities[1] + probabilities[2]) * (1.0 / 3)
    assertClose(try mean["probabilities"]!.finiteFloatTensor(named: "", path: "").converted(to: .float64), expected, relativeTolerance: 1e-6)
    assertClose(try mean["logits"]!.finiteFloatTensor(named: "", path: "").converted(to: .float64), log(expected), relativeTolerance: 1e-5)

    let refused = try reprise("train", "--dataset", data, "--snapshots", "snaps")
    XCTAssertEqual(refused.status, 64)
    XCTAssert(refused.err.contains("--snapshots needs --schedule cyclic-cosine"), refused.err)
  }

  func testPrunedFilesDescribeTheirNetworkToEveryCommand() throws {
    let data = try dataSet("tiny.safetensors")
    let train = try reprise(
      "train", "--dataset", data, "--model", "densenet", "--depth", "10", "--growth-rate", "4", "--batch-size", "4", "--threads", "1",
      "--sparsity", "1e-3", "--save", "m.safetensors")
    XCTAssertEqual(train.status, 0, train.err)
    let prune = try reprise("prune", "--weights", "m.safetensors", "--ratio", "0.4", "--output", "p.safetensors")
    XCTAssertEqual(prune.status, 0, prune.err)
    XCTAssert(prune.out.contains("Removed 100 of 252 batch-norm channels"), prune.out)
    XCTAssert(prune.out.contains("Wrote densenet-10-k4-pruned"), prune.out)

    // No model options: the file says what it is.
    let summary = try reprise("summary", "--weights", "p.safetensors", "--json")
    XCTAssertEqual(summary.status, 0, summary.err)
    let object = try JSONSerialization.jsonObject(with: Data(summary.out.utf8)) as? [String: Any]
    XCTAssertEqual(object?["model"] as? String, "densenet-10-k4-pruned")
    XCTAssertEqual(object?["parameters"] as? Int, try state("p.safetensors").filter { !$0.key.contains("running") }.values.reduce(0) { $0 + $1.count })
    XCTAssertEqual(try reprise("eval", "--dataset", data, "--weights", "p.safetensors").status, 0)
    XCTAssertEqual(try reprise("bench", "--weights", "p.safetensors", "--input-size", "1,8,8", "--batch-size", "2", "--steps", "1").status, 0)
    let fineTune = try reprise("train", "--dataset", data, "--init-weights", "p.safetensors", "--batch-size", "4", "--max-steps", "1", "--threads", "1")
    XCTAssertEqual(fineTune.status, 0, fineTune.err)
    XCTAssert(fineTune.out.contains("Training densenet-10-k4-pruned"), fineTune.out)
    XCTAssertEqual(try reprise("eval", "--dataset", data, "--weights", "densenet-10-k4-pruned-tiny.safetensors").status, 0)
    // A fine-tuning run resumes from its training state alone, which records the network too.
    let fineTuning = ["train", "--dataset", data, "--batch-size", "4", "--threads", "1", "--epochs", "2"]
    XCTAssertEqual(try reprise(fineTuning + ["--init-weights", "p.safetensors", "--save", "whole.safetensors"]).status, 0)
    XCTAssertEqual(try reprise(fineTuning + ["--init-weights", "p.safetensors", "--max-steps", "2", "--checkpoint", "ft.safetensors"]).status, 0)
    let resumed = try reprise(fineTuning + ["--resume", "ft.safetensors", "--save", "resumed.safetensors"])
    XCTAssertEqual(resumed.status, 0, resumed.err)
    XCTAssertEqual(try state("resumed.safetensors"), try state("whole.safetensors"))
    let other = try reprise("eval", "--dataset", data, "--model", "resnet20", "--weights", "p.safetensors")
    XCTAssertEqual(other.status, 64)
    XCTAssert(other.err.contains("names another network"), other.err)

    // ResNets: the blocks' inner channels.
    XCTAssertEqual(try reprise("train", "--dataset", data, "--model", "resnet20", "--batch-size", "4", "--max-steps", "1", "--threads", "1", "--save", "r.safetensors").status, 0)
    let resnet = try reprise("prune", "--weights", "r.safetensors", "--ratio", "0.5", "--output", "rp.safetensors")
    XCTAssertEqual(resnet.status, 0, resnet.err)
    XCTAssert(resnet.out.contains("Removed 168 of 336"), resnet.out)
    XCTAssertEqual(try reprise("eval", "--dataset", data, "--weights", "rp.safetensors").status, 0)
    XCTAssertEqual(try reprise("train", "--dataset", data, "--model", "resnet20", "--conv", "dsconv", "--batch-size", "4", "--max-steps", "1", "--threads", "1", "--save", "d.safetensors").status, 0)
    let unsupported = try reprise("prune", "--model", "resnet20", "--conv", "dsconv", "--input-channels", "1", "--classes", "2", "--weights", "d.safetensors", "--ratio", "0.5", "--output", "dp.safetensors")
    XCTAssertNotEqual(unsupported.status, 0)
    XCTAssert(unsupported.err.contains("--conv standard"), unsupported.err)

    // A record that asks for a network the file cannot hold is an error, not an allocation.
    let (entries, metadata) = try SafeTensors.read(directory + "/p.safetensors")
    let inconsistent = metadata[Architecture.metadataKey]!.replacingOccurrences(of: #""blocks":[2,2,2]"#, with: #""blocks":[1000,1000,1000]"#)
    let huge = Architecture.denseNet(try .cifar(depth: 304, growthRate: 4096, bottleneck: false)).metadata[Architecture.metadataKey]!
    for (name, record, message) in [("inconsistent", inconsistent, "is not valid: pruning"), ("huge", huge, "but the file holds")] {
      try SafeTensors.write(entries.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: [Architecture.metadataKey: record], to: directory + "/\(name).safetensors")
      let hostile = try reprise("eval", "--dataset", data, "--weights", "\(name).safetensors")
      XCTAssertEqual(hostile.status, 1, name)
      XCTAssert(hostile.err.contains("is not a valid file") && hostile.err.contains(message), hostile.err)
    }
  }
}
