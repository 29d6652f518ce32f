import CSndfile

#if canImport(Glibc)
  import Glibc
#endif

/// How an emotion sounds in the synthetic corpus: pitch level and contour, syllable rate, loudness, jitter,
/// spectral tilt.
struct Prosody {
  var f0: Double  // Hz, before the speaker's factor
  var slope: Double  // octaves per second over an utterance
  var wobble: Double  // depth of a 3 Hz pitch modulation, octaves
  var rate: Double  // syllables per second
  var loudness: Double
  var jitter: Double  // relative period noise
  var brightness: Double  // 0 dark .. 1 bright (one-pole low-pass)
}

let prosody: [String: Prosody] = [
  "angry": Prosody(f0: 190, slope: 0.1, wobble: 0.05, rate: 5.5, loudness: 0.9, jitter: 0.03, brightness: 0.9),
  "disgust": Prosody(f0: 120, slope: -0.15, wobble: 0.02, rate: 3, loudness: 0.5, jitter: 0.04, brightness: 0.35),
  "fear": Prosody(f0: 230, slope: 0.2, wobble: 0.12, rate: 6.5, loudness: 0.35, jitter: 0.06, brightness: 0.6),
  "happy": Prosody(f0: 210, slope: 0.05, wobble: 0.15, rate: 5, loudness: 0.7, jitter: 0.015, brightness: 0.75),
  "neutral": Prosody(f0: 130, slope: 0, wobble: 0.01, rate: 4, loudness: 0.5, jitter: 0.01, brightness: 0.5),
  "sad": Prosody(f0: 105, slope: -0.25, wobble: 0.02, rate: 2.5, loudness: 0.25, jitter: 0.02, brightness: 0.2),
  "surprise": Prosody(f0: 250, slope: 0.45, wobble: 0.05, rate: 4.5, loudness: 0.7, jitter: 0.02, brightness: 0.7),
]

/// A small labelled corpus of speech-like sounds: a glottal pulse train (with jitter) through three formant
/// resonators (vowels varying by syllable, scaled by the speaker's vocal tract), syllable envelopes, a spectral
/// tilt and a little breath noise; the emotion lives in pitch level and contour, rate, loudness, jitter and tilt,
/// and each speaker shifts pitch and formants. Files: `DIR/Synth/<speaker>_<nn>_<emotion>.wav`, 22,050 Hz,
/// 16-bit, 3.4 s. Returns the paths written.
@discardableResult
public func writeSyntheticCorpus(
  to dir: String, speakers: Int = 4, perClass: Int = 10, seed: UInt64 = 1
) throws -> [String] {
  let folder = dir + "/Synth"
  for d in [dir, folder] where mkdir(d, 0o755) != 0 && errno != EEXIST {
    throw AudioError(d, "cannot create the directory: \(String(cString: strerror(errno)))")
  }
  let sr = 22050.0
  let n = Int(3.4 * sr)
  var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
  func uniform() -> Double {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    return Double(state >> 11) * 0x1p-53
  }
  let vowels: [[Double]] = [
    [730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410],
  ]
  var written: [String] = []
  for s in 0..<speakers {
    let pitchFactor = 0.75 + 0.5 * Double(s) / Double(max(1, speakers - 1))  // low to high voices
    let tract = 0.92 + 0.16 * uniform()
    let speaker = "S\(s + 1)"
    for emotion in emotions {
      let p = prosody[emotion]!
      for u in 0..<perClass {
        var y = [Double](repeating: 0, count: n)
        // Glottal source: pulses at the (jittered, contoured) pitch period.
        var t = 0.0
        var lastPulse = -1.0
        let start = 0.2 + 0.2 * uniform()
        while t < Double(n) / sr {
          let time = t
          let octave = p.slope * (time - 1.5) + p.wobble * sin(2 * Double.pi * 3 * time + Double(u))
          let f0 = p.f0 * pitchFactor * pow(2, octave) * (1 + 0.04 * (uniform() - 0.5))
          let period = (1 / f0) * (1 + p.jitter * (uniform() - 0.5) * 2)
          let i = Int(time * sr)
          if i < n && time > start && lastPulse < time { y[i] += 1 }
          lastPulse = time
          t += period
        }
        // Glottal shaping (two-pole low-pass) and the emotion's spectral tilt (one-pole low-pass).
        var a1 = 0.0
        var a2 = 0.0
        let tilt = 0.35 + 0.6 * (1 - p.brightness)
        var lp = 0.0
        for i in 0..<n {
          let v = y[i] + 1.6 * a1 - 0.64 * a2
          a2 = a1
          a1 = v
          lp = (1 - tilt) * v + tilt * lp
          y[i] = lp
        }
        // Syllables: a vowel each, through three resonators, with a raised-cosine envelope.
        var out = [Double](repeating: 0, count: n)
        let syllable = 1 / (p.rate * (0.9 + 0.2 * uniform()))
        var begin = start
        var k = 0
        while begin < Double(n) / sr - 0.1 {
          let length = syllable * 0.75
          let formants = vowels[(u + k) % vowels.count].map { $0 * tract }
          let i0 = Int(begin * sr)
          let i1 = min(n, Int((begin + length) * sr))
          var states = [[Double]](repeating: [0, 0], count: 3)
          for i in i0..<i1 {
            var v = y[i]
            for (f, formant) in formants.enumerated() {
              let r = exp(-Double.pi * (60 + 0.05 * formant) / sr)
              let c = 2 * r * cos(2 * Double.pi * formant / sr)
              let o = (1 - r) * v + c * states[f][0] - r * r * states[f][1]
              states[f][1] = states[f][0]
              states[f][0] = o
              v = o
            }
            let phase = Double(i - i0) / Double(max(1, i1 - i0))
            out[i] += v * 0.5 * (1 - cos(2 * Double.pi * phase))
          }
          begin += syllable
          k += 1
        }
        var peak = 1e-9
        for v in out { peak = max(peak, abs(v)) }
        let gain = p.loudness * (0.85 + 0.3 * uniform()) / peak * 0.9
        var samples = [Int16](repeating: 0, count: n)
        for i in 0..<n {
          let v = out[i] * gain + 0.003 * (uniform() - 0.5)
          samples[i] = Int16(max(-32767, min(32767, (v * 32767).rounded())))
        }
        let path = folder + "/\(speaker)_\(String(format2(u)))_\(emotion).wav"
        var info = SF_INFO()
        info.samplerate = Int32(sr)
        info.channels = 1
        info.format = Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
        guard let f = sf_open(path, Int32(SFM_WRITE), &info) else {
          throw AudioError(path, "cannot write: \(String(cString: sf_strerror(nil)))")
        }
        let wrote = samples.withUnsafeBufferPointer { sf_write_short(f, $0.baseAddress, sf_count_t(n)) }
        sf_close(f)
        guard wrote == n else { throw AudioError(path, "short write") }
        written.append(path)
      }
    }
  }
  return written
}

private func format2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
