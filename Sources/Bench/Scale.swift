import Base
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// One run of `bench scale` (a line `Benchmarks/scale.sh` wrote): what ran where, and its measurements.
public struct ScaleRecord: Codable, Sendable {
  public struct Labels: Codable, Sendable {
    public var model: String
    public var nodes: Int
    public var rate: String
    public var bucket_mb: Double
  }
  public var labels: Labels
  public var sample: TrainBenchSample
}

/// An allreduce's cost at p = 2 as measured: `alpha + beta * bytes`, alpha the smallest message's time and beta the
/// slope to the largest (a least-squares line let tbf's bursts on the middle sizes tilt it).
public struct LinkFit: Sendable {
  public var alpha: Double
  public var beta: Double

  /// From the smallest and largest sizes measured, the best time of each: noise only adds time. (At 200 Mbit/s tbf's
  /// drops stalled some transfers in TCP's recovery, at 1.5x the line's time, while every in-step allreduce of the
  /// same bytes ran at the line's rate; medians fitted a link 35% slower than the one the steps used.)
  public init(_ points: [(bytes: Double, seconds: Double)]) {
    let (small, large) = (points.map(\.bytes).min()!, points.map(\.bytes).max()!)
    alpha = points.filter { $0.bytes == small }.map(\.seconds).min()!
    beta = max(points.filter { $0.bytes == large }.map(\.seconds).min()! - alpha, 0) / large
  }
  public init(alpha: Double, beta: Double) { (self.alpha, self.beta) = (alpha, beta) }

  /// One allreduce of `bytes` over `p` ranks: the better of a ring (2(p-1) steps) and Rabenseifner's halving and
  /// doubling (2 log2 p steps), both moving 2(p-1)/p of the bytes through each link; at p = 2 the fit itself.
  public func allreduce(bytes: Double, ranks p: Int) -> Double {
    let perStep: Double = alpha / 2  // the fit's alpha is the two steps of p = 2
    let volume: Double = 2 * Double(p - 1) / Double(p) * bytes * beta
    let steps: Double = min(2 * Double(p - 1), 2 * log2(Double(p)).rounded(.up))
    return steps * perStep + volume
  }
}

/// Gradient buckets reduced one after another as they become ready (`ready` seconds after backward starts), each
/// taking `allreduce`: the seconds the last one ends after backward (`backward` seconds) does, or 0.
public func exposedCommunication(
  ready: [Double], bytes: [Double], backward: Double, allreduce: (Double) -> Double
) -> Double {
  var end = 0.0
  for (r, b) in zip(ready, bytes) { end = max(end, r) + allreduce(b) }
  return max(0, end - backward)
}

/// What one rank alone measured of a model: seconds per sample of forward and backward, Adam's seconds per step,
/// and when each bucket was ready (per sample of the batch) with its bytes.
public struct ComputeProfile: Sendable {
  public var forward: Double
  public var backward: Double
  public var adam: Double
  public var ready: [Double]
  public var bytes: [Double]
  public var gradientBytes: Double
  /// What overlap's communication takes from compute, which shares the rank's cores with it: seconds of CPU per
  /// byte sent (the network stack, MPI's copies, the progress thread's wake-ups), and the share of a core taken
  /// while a reduction is in flight during backward (its progress calls). `fitCommunicationCPU` measures both.
  public var cpuPerByte = 0.0
  public var cpuInFlight = 0.0

  public init(_ runs: [TrainBenchSample]) {
    let batch = Double(runs[0].globalBatch)
    forward = median(runs.flatMap(\.forwardSeconds)) / batch
    backward = median(runs.flatMap(\.backwardSeconds)) / batch
    adam = median(runs.flatMap(\.adamSeconds))
    let buckets = runs[0].bucketFloats.count
    ready = (0..<buckets).map { i in median(runs.map { $0.bucketStartSeconds[i] }) / batch }
    bytes = runs[0].bucketFloats.map { Double($0 * 4) }
    gradientBytes = Double(runs[0].gradientFloats * 4)
  }

  /// A step's seconds on each of `p` ranks of `cores` cores (compute divided ideally) for a global batch `batch`.
  public func step(batch: Int, ranks p: Int, cores: Int = 1, link: LinkFit, overlap: Bool) -> Double {
    let rows = Double(batch) / Double(p) / Double(cores)
    let exposed =
      p == 1
      ? 0
      : overlap
        ? exposedCommunication(
          ready: ready.map { $0 * rows }, bytes: bytes, backward: backward * rows,
          allreduce: { link.allreduce(bytes: $0, ranks: p) })
        : link.allreduce(bytes: gradientBytes, ranks: p)
    let cpu = overlap && p > 1 ? communicationCPU(rows: rows, ranks: p, link: link) / Double(cores) : 0
    return (forward + backward) * rows + adam / Double(cores) + exposed + cpu
  }

  /// Seconds of CPU overlap's communication takes from a backward over `rows` rows per core: per byte sent, and
  /// while the reductions are in flight.
  func communicationCPU(rows: Double, ranks p: Int, link: LinkFit) -> Double {
    cpuPerByte * 2 * Double(p - 1) / Double(p) * gradientBytes + cpuInFlight
      * inFlight(rows: rows, ranks: p, link: link)
  }

  /// Seconds the gradients' reductions are in flight during a backward over `rows` rows per core: their time on
  /// `link`, at most the backward's.
  func inFlight(rows: Double, ranks p: Int, link: LinkFit) -> Double {
    min(link.allreduce(bytes: gradientBytes, ranks: p), backward * rows)
  }

  /// Sets `cpuPerByte` and `cpuInFlight` from how much longer backward took overlapped than blocking at p = 2
  /// (`growth`, seconds) on each link: a least-squares line over the links' times in flight (one link, or a slope
  /// that would be negative: all of it per byte).
  public mutating func fitCommunicationCPU(batch: Int, _ growth: [(link: LinkFit, seconds: Double)]) {
    guard !growth.isEmpty else { return }
    let points = growth.map { (x: inFlight(rows: Double(batch) / 2, ranks: 2, link: $0.link), y: $0.seconds) }
    let (mx, my) = (
      points.map(\.x).reduce(0, +) / Double(points.count), points.map(\.y).reduce(0, +) / Double(points.count)
    )
    let sxx = points.reduce(0) { $0 + ($1.x - mx) * ($1.x - mx) }
    let slope = sxx > 0 ? max(0, points.reduce(0) { $0 + ($1.x - mx) * ($1.y - my) } / sxx) : 0
    cpuInFlight = slope
    cpuPerByte = max(0, my - slope * mx) / gradientBytes
  }
}

/// Predicted efficiency (one rank's time for the global batch over p times a step's) against p, as an SVG: one
/// line per (link rate, cores per rank).
public func scalingSVG(_ series: [(label: String, color: String, dash: String, points: [(p: Int, e: Double)])])
  -> String
{
  let (w, h, left, top, plotW, plotH) = (720.0, 420.0, 60.0, 20.0, 460.0, 340.0)
  func x(_ p: Int) -> Double { left + log2(Double(p)) / 6 * plotW }
  func y(_ e: Double) -> Double { top + (1 - e) * plotH }
  var s =
    #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(w))" height="\#(Int(h))" font-family="sans-serif" font-size="12">"#
  s += #"<rect width="100%" height="100%" fill="white"/>"#
  for e in stride(from: 0.0, through: 1.0, by: 0.2) {
    s += #"<line x1="\#(left)" x2="\#(left + plotW)" y1="\#(y(e))" y2="\#(y(e))" stroke="lightgray"/>"#
    s += #"<text x="\#(left - 8)" y="\#(y(e) + 4)" text-anchor="end">\#(Int(e * 100))%</text>"#
  }
  for k in 0...6 {
    let p = 1 << k
    s += #"<text x="\#(x(p))" y="\#(top + plotH + 18)" text-anchor="middle">\#(p)</text>"#
  }
  s += #"<text x="\#(left + plotW / 2)" y="\#(h - 8)" text-anchor="middle">ranks (global batch 64)</text>"#
  for (i, line) in series.enumerated() {
    let path = line.points.map { "\(x($0.p)),\(y($0.e))" }.joined(separator: " ")
    s +=
      #"<polyline points="\#(path)" fill="none" stroke="\#(line.color)" stroke-width="2" stroke-dasharray="\#(line.dash)"/>"#
    let ly = top + 14 + Double(i) * 18
    s +=
      #"<line x1="\#(left + plotW + 16)" x2="\#(left + plotW + 44)" y1="\#(ly - 4)" y2="\#(ly - 4)" stroke="\#(line.color)" stroke-width="2" stroke-dasharray="\#(line.dash)"/>"#
    s += #"<text x="\#(left + plotW + 50)" y="\#(ly)">\#(line.label)</text>"#
  }
  return s + "</svg>\n"
}
