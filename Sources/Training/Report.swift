import Base
import Collective
import FeatureStore
import ModelFiles

#if canImport(Glibc)
  import Glibc
#endif

/// An HTML page with inline SVG: accuracy, loss and learning rate per epoch, the confusion matrix as a heat map
/// and the per-class table. No scripts, no external files.
/// `foldHistories`: cross-validation's folds, each one's epochs, drawn as one curve per fold.
public func reportHTML(
  title: String, facts: [(String, String)], history: [HistoryRow], evaluation: Evaluation?,
  foldHistories: [(fold: Int, history: [HistoryRow])] = []
) -> String {
  func esc(_ s: String) -> String {
    s.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;")
  }
  var body = "<h1>\(esc(title))</h1>\n<table class=\"facts\">"
  for (k, v) in facts { body += "<tr><th>\(esc(k))</th><td>\(esc(v))</td></tr>" }
  body += "</table>\n<div class=\"charts\">\n"
  let epochs = history.map { Double($0.epoch) }
  body += lineChart(
    "Accuracy", x: epochs,
    series: [
      ("train", "#1f77b4", history.map(\.accuracy)), ("validation", "#ff7f0e", history.map { $0.valAccuracy ?? .nan }),
    ],
    yRange: (0, 1))
  body += lineChart(
    "Loss", x: epochs,
    series: [("train", "#1f77b4", history.map(\.loss)), ("validation", "#ff7f0e", history.map { $0.valLoss ?? .nan })])
  body += lineChart("Learning rate", x: epochs, series: [("Adam", "#2ca02c", history.map(\.learningRate))], log: true)
  if !foldHistories.isEmpty {
    let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    let longest = foldHistories.map { $0.history.map(\.epoch).max() ?? 0 }.max() ?? 0
    let x = (1...max(longest, 1)).map(Double.init)
    func series(_ value: (HistoryRow) -> Double?) -> [(String, String, [Double])] {
      foldHistories.enumerated().map { i, f in
        let byEpoch = Dictionary(f.history.map { ($0.epoch, value($0) ?? .nan) }) { $1 }
        return ("\(f.fold)", palette[i % palette.count], x.map { byEpoch[Int($0)] ?? .nan })
      }
    }
    body += lineChart(
      "Validation accuracy by fold", x: x, series: series(\.valAccuracy), yRange: (0, 1), legendWidth: 32)
    body += lineChart("Training loss by fold", x: x, series: series(\.loss), legendWidth: 32)
  }
  body += "</div>\n"
  if let e = evaluation {
    let original = e.originalAlone.map { "; original rows alone: accuracy \(fixed($0.accuracy, 3)), \($0.rows) rows" }
    body +=
      "<h2>\(esc(e.split)) split: accuracy \(fixed(e.accuracy, 3)), loss \(fixed(e.loss, 3)), \(e.rows) rows"
      + "\(original ?? "")</h2>\n"
    body += "<div class=\"charts\">" + heatMap(e) + classTable(e)
    // Augmentations in extraction's order, corpora and speakers by name.
    let kinds = FeatureFormat.augmentationNames
    for (name, scores, order) in [
      ("augmentation", e.byAugmentation, { kinds.filter(($0 as [String: [Int]]).keys.contains) }),
      ("corpus", e.byCorpus, { $0.keys.sorted() }), ("speaker", e.bySpeaker, { $0.keys.sorted() }),
    ] {
      guard let scores, scores.count > 1 else { continue }
      body += "<table class=\"scores\"><tr><th>\(name)</th><th>accuracy</th><th>rows</th></tr>"
      for key in order(scores) {
        let (correct, total) = (scores[key]![0], scores[key]![1])
        body += "<tr><th>\(esc(key))</th><td>\(fixed(Double(correct) / Double(total), 3))</td><td>\(total)</td></tr>"
      }
      body += "</table>"
    }
    body += "</div>\n"
  }
  return """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
    <style>
    body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
    h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 24px 0 8px; }
    table.facts th { text-align: left; padding-right: 16px; font-weight: 600; color: #555; }
    .charts { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
    svg text { font: 12px system-ui, sans-serif; fill: #333; }
    table.scores { border-collapse: collapse; } table.scores td, table.scores th { padding: 4px 10px; text-align: right; }
    table.scores tr:nth-child(even) { background: #f4f4f4; } table.scores tr:first-child th { border-bottom: 1px solid #999; }
    </style></head><body>
    \(body)
    </body></html>

    """
}

func lineChart(
  _ title: String, x: [Double], series: [(String, String, [Double])], yRange: (Double, Double)? = nil,
  log: Bool = false,
  legendWidth: Double = 95
) -> String {
  let (w, h, left, right, top, bottom) = (420.0, 280.0, 56.0, 16.0, 28.0, 40.0)
  let values = series.flatMap(\.2).filter { $0.isFinite && (!log || $0 > 0) }
  guard !x.isEmpty, !values.isEmpty else { return "" }
  func t(_ v: Double) -> Double { log ? Glibc.log10(v) : v }
  // Ticks at round values: 1, 2, 2.5 or 5 times a power of ten apart (whole decades on a log axis, or 1-2-5 within
  // one), the axis from the tick below the data to the tick above it.
  var (lo, hi) = yRange ?? (t(values.min()!), t(values.max()!))
  let span = max(hi - lo, log ? 1 : max(abs(hi) * 1e-3, 1e-9))
  let unit = Glibc.pow(10, (Glibc.log10(span / 4)).rounded(.down))
  let step = log ? max(1, (span / 4).rounded(.up)) : [1, 2, 2.5, 5, 10].map { $0 * unit }.first { $0 * 4 >= span }!
  if yRange == nil { (lo, hi) = ((lo / step).rounded(.down) * step, (hi / step).rounded(.up) * step) }
  if hi <= lo { hi = lo + step }
  let ticks = Swift.stride(from: lo, through: hi + step / 1000, by: step).map { $0 }
  let decimals = max(0, -Int(Glibc.log10(step).rounded(.down)) + (step / unit == 2.5 ? 1 : 0))
  let (x0, x1) = (x.min()!, max(x.max()!, x.min()! + 1))
  func px(_ v: Double) -> Double { left + (v - x0) / (x1 - x0) * (w - left - right) }
  func py(_ v: Double) -> Double { top + (1 - (t(v) - lo) / (hi - lo)) * (h - top - bottom) }
  var s = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\">"
  s += "<text x=\"\(Int(left))\" y=\"18\" style=\"font-weight:600\">\(title)</text>"
  for v in ticks {
    let y = top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom)
    let label = log ? power10(Int(v.rounded())) : fixed(v, decimals)
    s += "<line x1=\"\(left)\" x2=\"\(w - right)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#e5e5e5\"/>"
    s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(label)</text>"
  }
  let epochStep = [1, 2, 5, 10, 20, 50, 100].first { Double($0) * 8 >= x1 - x0 } ?? Int((x1 - x0) / 8)
  for e in Swift.stride(from: Int(x0), through: Int(x1), by: epochStep) {
    s += "<text x=\"\(px(Double(e)))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(e)</text>"
  }
  s += "<text x=\"\((left + w - right) / 2)\" y=\"\(h - 6)\" text-anchor=\"middle\">epoch</text>"
  s += "<line x1=\"\(left)\" x2=\"\(left)\" y1=\"\(top)\" y2=\"\(h - bottom)\" stroke=\"#999\"/>"
  s += "<line x1=\"\(left)\" x2=\"\(w - right)\" y1=\"\(h - bottom)\" y2=\"\(h - bottom)\" stroke=\"#999\"/>"
  for (k, (name, color, ys)) in series.enumerated() {
    let points = zip(x, ys).filter { $0.1.isFinite && (!log || $0.1 > 0) }.map { "\(px($0.0)),\(py($0.1))" }
    if points.isEmpty { continue }
    s += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points.joined(separator: " "))\"/>"
    for p in points {
      let c = p.split(separator: ",")
      s += "<circle cx=\"\(c[0])\" cy=\"\(c[1])\" r=\"2.5\" fill=\"\(color)\"/>"
    }
    // Legends in the title row, clear of the curves.
    let lx = w - right - legendWidth * Double(series.count - k)
    let ly = 14.0
    s += "<line x1=\"\(lx)\" x2=\"\(lx + 18)\" y1=\"\(ly)\" y2=\"\(ly)\" stroke=\"\(color)\" stroke-width=\"2\"/>"
    s += "<text x=\"\(lx + 24)\" y=\"\(ly + 4)\">\(name)</text>"
  }
  return s + "</svg>\n"
}

/// 10^e as a label: 0.001, 0.01, 0.1, 1, 10, ... and 1e-4 below.
private func power10(_ e: Int) -> String {
  e >= 0
    ? "1" + String(repeating: "0", count: e) : e >= -3 ? "0." + String(repeating: "0", count: -e - 1) + "1" : "1e\(e)"
}

/// The confusion matrix, each row shaded by its share of the true class.
func heatMap(_ e: Evaluation) -> String {
  let k = e.classes.count
  let cell = 52.0
  let left = 84.0
  let top = 40.0
  let w = left + cell * Double(k) + 12
  let h = top + cell * Double(k) + 56
  var s = "<svg width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\">"
  s += "<text x=\"\(left)\" y=\"14\" style=\"font-weight:600\">Confusion matrix</text>"
  s += "<text x=\"\(left)\" y=\"30\" fill=\"#666\">rows: true, columns: predicted; % of the row, count</text>"
  for i in 0..<k {
    let total = max(1, e.confusion[i].reduce(0, +))
    s +=
      "<text x=\"\(left - 6)\" y=\"\(top + cell * (Double(i) + 0.5) + 4)\" text-anchor=\"end\">\(e.classes[i])</text>"
    for j in 0..<k {
      let share = Double(e.confusion[i][j]) / Double(total)
      let shade = Int(255 - share * 200)
      let color = i == j ? "rgb(\(shade),\(min(255, shade + 40)),255)" : "rgb(255,\(shade),\(shade))"
      let x = left + cell * Double(j)
      let y = top + cell * Double(i)
      s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell - 2)\" height=\"\(cell - 2)\" fill=\"\(color)\"/>"
      guard e.confusion[i][j] > 0 else { continue }
      s +=
        "<text x=\"\(x + cell / 2 - 1)\" y=\"\(y + cell / 2 - 2)\" text-anchor=\"middle\">\(fixed(100 * share, 0))%</text>"
      s += "<text x=\"\(x + cell / 2 - 1)\" y=\"\(y + cell / 2 + 12)\" text-anchor=\"middle\" fill=\"#666\">"
      s += "\(e.confusion[i][j])</text>"
    }
  }
  for j in 0..<k {
    let x = left + cell * (Double(j) + 0.5)
    let y = top + cell * Double(k) + 14
    s += "<text x=\"\(x)\" y=\"\(y)\" text-anchor=\"end\" transform=\"rotate(-35 \(x) \(y))\">\(e.classes[j])</text>"
  }
  return s + "</svg>\n"
}

func classTable(_ e: Evaluation) -> String {
  var s = "<table class=\"scores\"><tr><th></th><th>precision</th><th>recall</th><th>f1-score</th><th>support</th></tr>"
  for c in e.perClass + [e.macro, e.weighted] {
    s += "<tr><th>\(c.name)</th><td>\(fixed(c.precision, 2))</td><td>\(fixed(c.recall, 2))</td>"
    s += "<td>\(fixed(c.f1, 2))</td><td>\(c.support)</td></tr>"
  }
  return s + "<tr><th>accuracy</th><td></td><td></td><td>\(fixed(e.accuracy, 2))</td><td>\(e.rows)</td></tr></table>\n"
}

/// Writes the report (default `RUN_DIR/report.html`) from the run's last checkpoint (history, configuration) and
/// an evaluation of it.
public func writeRunReport(runDir: String, last: Checkpoint, evaluation: Evaluation?, to output: String? = nil)
  throws -> String
{
  guard let text = last.training, let state = try? TrainingState.parse(text) else {
    throw Failure("\(runDir)/checkpoint-last.h5 has no training state")
  }
  let c = state.config
  let parameters = grouped(last.parameters.count + last.state.count)
  let seconds = state.history.reduce(0) { $0 + $1.seconds }
  var facts: [(String, String)] = [
    ("run", runDir), ("report written", "\(formatTime(unixTime())) by \(buildIdentity)"),
    ("trained by", c.builtBy ?? "a build from before versions were recorded"),
    (
      "model",
      "\(last.spec.name): \(parameters) parameters\(c.model == last.spec.name ? "" : " (\(c.model))")"
        + (c.initFrom.map { ", started from \($0)'s weights (--init-from)" } ?? "")
    ),
    ("data", "\(c.data)\(last.recipe.map { ", \($0.layout.rawValue) layout" } ?? "")"),
    ("classes", last.classNames.joined(separator: ", ")),
    ("epochs", "\(state.history.count) of \(c.epochs)\(state.finished ? ", finished" : ", in progress")"),
    (
      "training",
      "Adam, learning rate \(c.learningRate)"
        + (c.lrScaling.map { $0 == .none } ?? true
          ? "" : " scaled \(c.lrScaling!.rawValue) from batch \(c.baseBatch ?? 64) to \(c.scaledLearningRate)")
        + ((c.warmupEpochs ?? 0) > 0 ? " after \(c.warmupEpochs!) epochs of linear warmup" : "")
        + ", batch \(c.batchSize) on \(state.ranks) rank(s), seed \(c.seed)"
        + ((c.precision ?? .fp32) == .fp32 ? "" : ", \(c.precision!) convolutions") + "; "
        + "early stopping on \(c.earlyStopping.monitor), patience \(c.earlyStopping.patience); learning rate x"
        + "\(c.reduceLR.factor) after \(c.reduceLR.patience) epochs without improvement, floor \(c.reduceLR.minLR)"
        + (c.standardizationMode == .none ? "" : "; features standardised by \(c.standardizationMode.rawValue)")
        + (c.classWeights.map { w in
          "; class weights (\(c.classWeight ?? "")): "
            + zip(last.classNames, w).map { "\($0) \(fixed($1, 3))" }.joined(separator: ", ")
        } ?? "")
    ),
    (
      "time",
      "\(formatDuration(seconds)) of training"
        + (state.history.first?.end.map { " from \(formatTime($0 - state.history[0].seconds))" } ?? "")
        + (state.history.last?.end.map { " to \(formatTime($0))" } ?? "")
    ),
  ]
  let data = try? FeatureFile(path: defaultData(last, nil))
  if let data, data.leaksAcrossSplits, c.split != .random {
    facts.append(
      (
        "warning",
        "the rows are not grouped by recording (converted without --rows-per-recording): augmented copies "
          + "of one recording can be on both sides of the split, so held-out accuracy is optimistic"
      ))
  }
  if let split = last.split {
    let labels = data?.labels
    func sizes(_ part: Int8) -> String {
      let rows = split.indices.filter { split[$0] == part }
      guard let labels, labels.count == split.count else { return "\(rows.count)" }
      let perClass = last.classNames.indices.map { c in rows.filter { labels[$0] == Int32(c) }.count }
      return "\(rows.count) (" + perClass.map(String.init).joined(separator: "/") + ")"
    }
    facts.append(
      (
        "split",
        "by \(c.split.rawValue): train \(sizes(0)), val \(sizes(1)), test \(sizes(2)) rows (per class, as above)"
      ))
  }
  // What a short run left out, so that its numbers are not read as a full run's.
  if let rows = c.limitRows {
    let left = last.split.map { s in s.filter { $0 == 3 }.count }.map { ": \($0) rows left out" } ?? ""
    facts.append(("cut", "--limit-rows \(rows)\(left) (a short run for trying things out)"))
  }
  if let steps = c.stepsPerEpoch {
    facts.append(("cut", "--steps-per-epoch \(steps): each epoch trained on at most \(steps * c.batchSize) rows"))
  }
  if let b = state.bestValue, let epoch = state.bestEpoch {
    facts.append(("best", "\(c.earlyStopping.monitor) \(fixed(b, 4)) at epoch \(epoch)"))
  }
  // The weights evaluated are the run's final ones, which are the best epoch's when early stopping restored them
  // (checkpoint-best.h5 holds the same).
  let weights =
    state.weightsEpoch.map { w in
      w == state.history.last?.epoch ? "its last epoch's (\(w))" : "epoch \(w)'s, the best, restored at the end"
    } ?? "its last"
  facts.append(("evaluated", "the run's final weights, \(weights) (\(Trainer.lastName))"))
  if let warning = evaluation?.seenWarning {
    facts.append(
      ("warning", warning + (c.split == .random ? " (split by random: a recording's rows are on both sides)" : "")))
  }
  let html = reportHTML(title: "sertrain report", facts: facts, history: state.history, evaluation: evaluation)
  let path = output ?? runDir + "/report.html"
  try writeTextAtomically(html, to: path)
  return path
}

/// The data file a checkpoint was trained on, when `--data` is not given.
public func defaultData(_ c: Checkpoint, _ given: String?) -> String {
  if let given { return given }
  if let t = c.training, let s = try? TrainingState.parse(t) {
    if access(s.config.data, R_OK) != 0, let absolute = s.dataPath, access(absolute, R_OK) == 0 { return absolute }
    return s.config.data
  }
  return "features.h5"
}

/// The rows evaluate and the report take when none are named: of the data the checkpoint was trained on (`own`: no
/// `--data`, or a file of the same identity), its test split (validation, train when it held none out); of other
/// data, the rows of recordings it did not see (all when it does not record them).
public func defaultSplit(_ c: Checkpoint, data file: FeatureFile, own given: Bool) -> String {
  let trained = c.training.flatMap { try? TrainingState.parse($0) }?.data
  let own =
    given
    || (trained.map { $0 == (try? DataIdentity(file)) }
      ?? (file.classes == c.classNames && c.split?.count == file.rowCount))
  guard own, let split = c.split else { return c.seenRecordings == nil ? "all" : "unseen" }
  return split.contains(2) ? "test" : split.contains(1) ? "val" : "train"
}

/// Evaluates the run's final weights and writes its report on rank 0; returns the report's path and the
/// evaluation there.
public func makeReport(
  runDir: String, data: String?, split: String?, comm: Communicator, output: String? = nil, progress: Bool = false
) throws -> (String, Evaluation?)? {
  let path = runDir + "/" + Trainer.lastName
  if access(path, F_OK) != 0 && access(runDir + "/folds.csv", F_OK) == 0 {
    throw Failure(
      runDir,
      "is a cross-validation directory: its report is cv.html, which the same sertrain cv command writes again; "
        + "each fold's run is \(runDir)/fold-i")
  }
  let last = try Checkpoint.read(path)
  var evaluation: Evaluation?
  do {
    let file = try FeatureFile(path: defaultData(last, data))
    evaluation = try evaluate(
      last, path: path, data: file, split: split ?? defaultSplit(last, data: file, own: data == nil), comm: comm,
      progress: progress)
  } catch {
    if comm.rank == 0 { printError("sertrain: warning: the report has no evaluation: \(error)") }
  }
  guard comm.rank == 0 else { return nil }
  return (try writeRunReport(runDir: runDir, last: last, evaluation: evaluation, to: output), evaluation)
}
