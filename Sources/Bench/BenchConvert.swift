import AudioFeatures
import Base
import FeatureStore
import Training

#if canImport(Glibc)
  import Glibc
#endif

/// Writes a seed-shaped CSV: header `0,…,width-1,labels`, `rows` rows of values shaped like the seed's features
/// (ZCR and RMS in [0, 1), MFCCs of a few hundred) with 8 significant digits, and one of the 7 emotions per row.
/// `float64`: each value rounded to float32 and written as the shortest float64 that reads back as it (up to 17
/// digits, "-345.67889404296875"), as pandas writes the seed's float64 array of float32 features.
public func writeSeedShapedCSV(
  path: String, rows: Int, width: Int = FeatureFormat.seedWidth, seed: UInt64 = 7, float64: Bool = false
) throws {
  guard let f = fopen(path, "w") else {
    throw Failure("\(path): cannot create: \(String(cString: strerror(errno)))")
  }
  defer { fclose(f) }
  var header = (0..<width).map(String.init).joined(separator: ",") + ",labels\n"
  fputs(header, f)
  header = ""
  var rng = RandomStream(seed: seed)
  var line = [UInt8]()
  line.reserveCapacity(width * 14)
  var digits = [UInt8](repeating: 0, count: 24)
  for r in 0..<rows {
    line.removeAll(keepingCapacity: true)
    for c in 0..<width {
      // Value = m * 10^-decimals, m with up to 8 digits: "0.0712891", "-345.67891".
      let r64 = rng.next()
      let negative = c >= 216 && (r64 & 1) == 1
      let decimals = c < 216 ? 7 : 5
      var m = (r64 >> 1) % (c < 216 ? 10_000_000 : 60_000_000)
      if float64 {
        let value = Double(Float(Double(m) / (c < 216 ? 1e7 : 1e5))) * (negative ? -1 : 1)
        line.append(contentsOf: value.description.utf8)
        line.append(UInt8(ascii: ","))
        continue
      }
      if negative { line.append(UInt8(ascii: "-")) }
      var n = 0
      repeat {
        digits[n] = UInt8(ascii: "0") + UInt8(m % 10)
        m /= 10
        n += 1
      } while m > 0 || n <= decimals
      for k in stride(from: n - 1, through: 0, by: -1) {
        if k == decimals - 1 { line.append(UInt8(ascii: ".")) }
        line.append(digits[k])
      }
      line.append(UInt8(ascii: ","))
    }
    line.append(contentsOf: emotions[r % 7].utf8)
    line.append(UInt8(ascii: "\n"))
    guard fwrite(line, 1, line.count, f) == line.count else {
      throw Failure("\(path): write failed: \(String(cString: strerror(errno)))")
    }
  }
}

/// Creates (once) a virtual environment with `packages` and returns its python.
public func benchmarkVenv(_ dir: String, packages: [String]) throws -> String {
  let python = dir + "/bin/python"
  if access(python, X_OK) != 0 {
    let made = try runMeasured(["python3", "-m", "venv", dir])
    guard made.status == 0 else { throw Failure("python3 -m venv \(dir) failed") }
  }
  let check = try runMeasured([
    python, "-c", "import " + packages.map { $0 == "tensorflow-cpu" ? "tensorflow" : $0 }.joined(separator: ","),
  ])
  if check.status != 0 {
    let pip = try runMeasured([python, "-m", "pip", "install", "-q"] + packages)
    guard pip.status == 0 else { throw Failure("pip install \(packages.joined(separator: " ")) failed") }
  }
  return python
}
