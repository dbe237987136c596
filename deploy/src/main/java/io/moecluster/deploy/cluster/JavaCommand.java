package io.moecluster.deploy.cluster;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The command line that starts another JVM like this one: the same java binary, the same class
 * path, the JVM flags every moe JVM needs, and this JVM's own heap, GC and {@code -D} settings
 * (so {@code MOE_JAVA_OPTS} and system-property overrides reach the children too). Debugger and
 * agent flags are left out: two JVMs cannot listen on one debug port.
 */
public final class JavaCommand {
  /** Flags without which the model runtime, Pekko or protobuf fail or warn on Java 25. */
  static final List<String> REQUIRED_FLAGS =
      List.of(
          "--add-modules=jdk.incubator.vector",
          "--enable-native-access=ALL-UNNAMED",
          "--sun-misc-unsafe-memory-access=allow");

  private JavaCommand() {}

  /** {@code java <flags> -cp <class path> <mainClass>}, ready for the main class's arguments. */
  public static List<String> forMainClass(String mainClass) {
    List<String> cmd = new ArrayList<>();
    cmd.add(javaBinary());
    cmd.addAll(jvmFlags(ManagementFactory.getRuntimeMXBean().getInputArguments()));
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(mainClass);
    return cmd;
  }

  static String javaBinary() {
    return ProcessHandle.current()
        .info()
        .command()
        .orElseGet(() -> Path.of(System.getProperty("java.home"), "bin", "java").toString());
  }

  /** The flags of {@code inputArguments} worth passing on, plus the required ones. */
  static List<String> jvmFlags(List<String> inputArguments) {
    List<String> flags = new ArrayList<>();
    for (String arg : inputArguments) {
      if (keep(arg) && !flags.contains(arg)) {
        flags.add(arg);
      }
    }
    for (String required : REQUIRED_FLAGS) {
      String name = required.substring(0, required.indexOf('='));
      if (flags.stream().noneMatch(f -> f.equals(required) || (f.startsWith(name + "=") && !name.equals("--add-modules")))) {
        flags.add(required);
      }
    }
    return flags;
  }

  private static boolean keep(String arg) {
    if (arg.startsWith("-agentlib") || arg.startsWith("-agentpath") || arg.startsWith("-javaagent")
        || arg.startsWith("-Xdebug") || arg.startsWith("-Xrunjdwp")
        || arg.equals("--add-modules=ALL-DEFAULT")) {
      return false;
    }
    return arg.startsWith("-D")
        || arg.startsWith("-X")
        || arg.startsWith("--add-modules")
        || arg.startsWith("--enable-native-access")
        || arg.startsWith("--sun-misc-unsafe-memory-access")
        || arg.startsWith("--add-opens")
        || arg.startsWith("--add-exports")
        || arg.startsWith("--enable-preview");
  }
}
