package io.moecluster.deploy;

import io.moecluster.deploy.cli.MoeVersion;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

/**
 * {@code moe version}: what is installed and what this machine offers the kernels. The first
 * thing to ask for in a bug report.
 */
@Command(
    name = "version",
    mixinStandardHelpOptions = true,
    description = "Print the moe version, the Java runtime and the SIMD support the kernels see.")
final class VersionCommand implements Callable<Integer> {

  @Spec private CommandSpec spec;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    Runtime runtime = Runtime.getRuntime();
    out.printf("moe %s%n", MoeVersion.version());
    out.printf(
        "java %s (%s, %s)%n",
        Runtime.version(), System.getProperty("java.vm.vendor"), System.getProperty("java.home"));
    out.printf("vector %s%n", vectorSpecies());
    out.printf("processors %d%n", runtime.availableProcessors());
    out.printf("max heap %.1f GiB%n", runtime.maxMemory() / (double) (1L << 30));
    out.flush();
    return 0;
  }

  /** The Vector API is an incubator module; without --add-modules its classes are missing. */
  private static String vectorSpecies() {
    try {
      var species = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
      return "%s: %d-bit, %d floats per vector"
          .formatted(species, species.vectorBitSize(), species.length());
    } catch (NoClassDefFoundError e) {
      return "unavailable (start the JVM with --add-modules jdk.incubator.vector)";
    }
  }
}
