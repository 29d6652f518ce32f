// One small proof per C library that it links and computes.
import CFFTW
import CHDF5
import COpenBLAS
import CSndfile
import CSoxr
import Foundation
import XCTest
import _TestSupport

final class LibrarySmokeTests: XCTestCase {
  func testFFTWFindsTheToneBin() {
    let n = 256
    let bin = 17
    let input = fftwf_alloc_real(n)!
    let output = fftwf_alloc_complex(n / 2 + 1)!
    defer {
      fftwf_free(input)
      fftwf_free(output)
    }
    let plan = fftwf_plan_dft_r2c_1d(Int32(n), input, output, UInt32(FFTW_ESTIMATE))!
    defer { fftwf_destroy_plan(plan) }
    for i in 0..<n { input[i] = sin(2 * .pi * Float(bin * i) / Float(n)) }
    fftwf_execute(plan)
    let mags = (0...(n / 2)).map { k -> Float in
      let re = output[k].0
      let im = output[k].1
      return (re * re + im * im).squareRoot()
    }
    XCTAssertEqual(mags.indices.max { mags[$0] < mags[$1] }, bin)
    XCTAssertEqual(mags[bin], Float(n) / 2, accuracy: 1e-3)
  }

  func testOpenBLASSgemm() {
    // [1 2; 3 4] x [5 6; 7 8] = [19 22; 43 50]
    let a: [Float] = [1, 2, 3, 4]
    let b: [Float] = [5, 6, 7, 8]
    var c = [Float](repeating: 0, count: 4)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
    XCTAssertEqual(c, [19, 22, 43, 50])
  }

  func testHDF5RoundTrip() throws {
    let path = temporaryDirectory(self) + "/smoke.h5"
    let f = H5Fcreate(path, sertrain_H5F_ACC_TRUNC(), sertrain_H5P_DEFAULT(), sertrain_H5P_DEFAULT())
    XCTAssertGreaterThanOrEqual(f, 0)
    var dims: [hsize_t] = [3]
    let space = H5Screate_simple(1, &dims, nil)
    let d = H5Dcreate2(
      f, "x", sertrain_H5T_NATIVE_FLOAT(), space, sertrain_H5P_DEFAULT(), sertrain_H5P_DEFAULT(),
      sertrain_H5P_DEFAULT())
    let values: [Float] = [1.5, -2, 3.25]
    XCTAssertEqual(
      H5Dwrite(d, sertrain_H5T_NATIVE_FLOAT(), sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), values),
      0)
    var back = [Float](repeating: 0, count: 3)
    XCTAssertEqual(
      H5Dread(d, sertrain_H5T_NATIVE_FLOAT(), sertrain_H5S_ALL(), sertrain_H5S_ALL(), sertrain_H5P_DEFAULT(), &back), 0)
    H5Dclose(d)
    H5Sclose(space)
    H5Fclose(f)
    XCTAssertEqual(back, values)
  }

  func testSndfileRoundTrip() throws {
    let path = temporaryDirectory(self) + "/tone.wav"
    var info = SF_INFO()
    info.samplerate = 16000
    info.channels = 1
    info.format = Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
    let samples = (0..<1000).map { Float(sin(Double($0) * 0.05) * 0.5) }
    let w = sf_open(path, Int32(SFM_WRITE), &info)
    XCTAssertNotNil(w, String(cString: sf_strerror(nil)))
    XCTAssertEqual(sf_writef_float(w, samples, 1000), 1000)
    sf_close(w)
    var rinfo = SF_INFO()
    let r = sf_open(path, Int32(SFM_READ), &rinfo)
    XCTAssertNotNil(r)
    XCTAssertEqual(rinfo.samplerate, 16000)
    XCTAssertEqual(rinfo.frames, 1000)
    var back = [Float](repeating: 0, count: 1000)
    XCTAssertEqual(sf_readf_float(r, &back, 1000), 1000)
    sf_close(r)
    XCTAssertEqual(back, samples)
  }

  func testSoxrResamplesATone() {
    // 1 kHz at 48 kHz to 22.05 kHz: length ratio and amplitude are kept.
    let n = 48000
    let input = (0..<n).map { Float(sin(2 * Double.pi * 1000 * Double($0) / 48000)) }
    let outLen = Int((Double(n) * 22050 / 48000).rounded(.up))
    var output = [Float](repeating: 0, count: outLen + 64)
    var idone = 0
    var odone = 0
    let io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
    var spec = io
    var q = soxr_quality_spec(UInt(SOXR_HQ), 0)
    let err = soxr_oneshot(48000, 22050, 1, input, n, &idone, &output, output.count, &odone, &spec, &q, nil)
    XCTAssertNil(err.map { String(cString: $0) })
    XCTAssertEqual(odone, outLen)
    let mid = Array(output[2000..<(outLen - 2000)])
    XCTAssertEqual(mid.map(abs).max()!, 1, accuracy: 0.01)
  }
}
