// A GRU sequence classifier on a task whose answer lies at the start of the sequence: each
// sequence is 16 symbols of 4 kinds, and its class is the symbol at position 0, so the network must
// carry it through 15 steps of distractors. Chance is 25%.
//
//   swift run -c release gru-classifier            # 600 steps
//   swift run -c release gru-classifier --steps 5  # a few steps
import Foundation
import Reprise

var steps = 600
var arguments = CommandLine.arguments.dropFirst()
while let option = arguments.popFirst() {
  guard option == "--steps", let value = arguments.popFirst().flatMap({ Int($0) }), value > 0 else {
    FileHandle.standardError.write(Data("usage: gru-classifier [--steps N]\n".utf8))
    exit(64)
  }
  steps = value
}

let (symbols, length, hidden, batchSize) = (4, 16, 32, 64)
var data = RandomGenerator(seed: 1)

/// One-hot sequences [batch, length, symbols] and the class of each: its first symbol.
func batch() -> (Tensor, [Int]) {
  var values = [Float](repeating: 0, count: batchSize * length * symbols), labels: [Int] = []
  for b in 0..<batchSize {
    for t in 0..<length {
      let symbol = Int(data.next() % UInt64(symbols))
      values[(b * length + t) * symbols + symbol] = 1
      if t == 0 { labels.append(symbol) }
    }
  }
  return (Tensor(values, shape: [batchSize, length, symbols]), labels)
}

RandomGenerator.global = RandomGenerator(seed: 0)
let gru = GRU(inputSize: symbols, hiddenSize: hidden)
let classifier = Linear(inputFeatures: hidden, outputFeatures: symbols)
let optimizer = Adam(gru.parameters + classifier.parameters, learningRate: 1e-2)
var correct = 0.0, seen = 0.0
for step in 1...steps {
  let (sequences, labels) = batch()
  optimizer.zeroGradients()
  let logits = classifier(gru(Variable(sequences)).state)
  let loss = crossEntropy(logits, labels: labels)
  loss.backward()
  clipGradientNorm(optimizer.parameters, maxNorm: 1)
  optimizer.step()
  correct += accuracy(logits.value, labels: labels) * Double(labels.count)
  seen += Double(labels.count)
  if step % 50 == 0 || step == steps {
    print(String(format: "step %d  loss %.3f  accuracy %.1f%% (chance 25%%)", step, loss.value.scalar, 100 * correct / seen))
    (correct, seen) = (0, 0)
  }
}
