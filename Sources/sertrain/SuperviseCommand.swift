import ArgumentParser
import Base
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct Supervise: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a training run's launcher (mpirun, srun) as a batch script's last command (exec).",
    discussion: """
      Passes SIGUSR1, SIGTERM and SIGINT on to the launcher as SIGUSR1, so that the ranks finish their step and \
      rank 0 writes a checkpoint, and exits as the run ended: 0 finished, 75 stopped after a checkpoint (resume \
      with --resume auto), else the launcher's failure. The Launch scripts end with it.
      """)

  @Option(help: "The run directory the launched 'sertrain train --run-dir' writes.")
  var runDir: String

  @Flag(help: "Under Slurm, requeue the job (scontrol requeue) when the run stopped after a checkpoint.")
  var requeue = false

  @Option(
    help: ArgumentHelp(
      "Kill the launcher when it outlives the last rank it started on this node by this long (OpenMPI 4.1's mpirun "
        + "can hang in its finalize after a rank died); 0: never.",
      valueName: "seconds"))
  var launcherGrace = 30.0

  @Argument(parsing: .postTerminator, help: "The launcher and its arguments, after --.")
  var command: [String]

  func validate() throws {
    if command.isEmpty { throw ValidationError("give the launcher after --, e.g. -- mpirun -n 4 sertrain train ...") }
    if !(launcherGrace >= 0) { throw ValidationError("--launcher-grace must be 0 or more seconds") }
  }

  func run() throws {
    var code: Int32 = 1
    try runReportingErrors { code = try superviseLauncher(command, runDir: runDir, grace: launcherGrace) }
    if code == Trainer.exitStopped, requeue, let job = environment()["SLURM_JOB_ID"] {
      print("sertrain stopped after a checkpoint: requeueing job \(job)")
      let requeued = (try? runForwardingStops(["scontrol", "requeue", job]).code) ?? 127
      if requeued != 0 { printError("sertrain: scontrol requeue \(job) failed (exit \(requeued))") }
    }
    if code != 0 { throw ExitCode(code) }
  }
}
