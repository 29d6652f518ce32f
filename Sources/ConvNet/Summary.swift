import Base

/// A Keras-style summary table: layer (type), output shape, parameter count, and the totals Keras prints.
public func summary(_ network: Network) -> String {
  func bytes(_ n: Int) -> String {
    let b = Double(n * 4)
    if b >= 1024 * 1024 { return "\((b / 1024 / 1024 * 100).rounded() / 100) MB" }
    if b >= 1024 { return "\((b / 1024 * 100).rounded() / 100) KB" }
    return "\(Int(b)) B"
  }
  let widths = (38, 24, 15)
  let rule = String(repeating: "─", count: widths.0 + widths.1 + widths.2 + 4)
  var lines = ["Model: \"\(network.spec.name)\"", rule]
  lines.append(
    " " + pad("Layer (type)", widths.0) + " " + pad("Output Shape", widths.1) + " "
      + pad("Param #", widths.2, right: true))
  lines.append(String(repeating: "═", count: rule.count))
  for plan in network.plans {
    let shape =
      plan.outputLength == 1 && plan.spec.type != .conv1D && plan.spec.type != .maxPooling1D
      ? "(None, \(plan.outputChannels))" : "(None, \(plan.outputLength), \(plan.outputChannels))"
    lines.append(
      " " + pad("\(plan.name) (\(plan.spec.type.rawValue))", widths.0) + " " + pad(shape, widths.1) + " "
        + pad(grouped(plan.parameterCount), widths.2, right: true))
  }
  lines.append(rule)
  let (t, n) = (network.trainableCount, network.nonTrainableCount)
  lines.append(" Total params: \(grouped(t + n)) (\(bytes(t + n)))")
  lines.append(" Trainable params: \(grouped(t)) (\(bytes(t)))")
  lines.append(" Non-trainable params: \(grouped(n)) (\(bytes(n)))")
  return lines.joined(separator: "\n")
}
