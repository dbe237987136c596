package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The distribution's launcher picks the JVM's memory defaults (G1, a metaspace mark above what a
 * node loads) and lets {@code MOE_JAVA_OPTS} replace each of them: a collector named there must
 * not be added to ours, or the JVM refuses to start.
 */
class LauncherJvmOptionsIT {

  @Test
  void defaultsToG1WithAMetaspaceMarkAboveTheNodesClasses() throws Exception {
    String out = moeVersion("-Xlog:gc -XX:+PrintFlagsFinal");
    assertTrue(out.contains("Using G1"), out);
    assertEquals(128L << 20, flag(out, "MetaspaceSize"));
  }

  @Test
  void aCollectorAndAMarkFromMoeJavaOptsReplaceTheDefaults() throws Exception {
    String out = moeVersion("-Xlog:gc -XX:+UseSerialGC -XX:MetaspaceSize=64m -XX:+PrintFlagsFinal");
    assertTrue(out.contains("Using Serial"), out);
    assertEquals(64L << 20, flag(out, "MetaspaceSize"));
  }

  /** Runs {@code moe version} with {@code MOE_JAVA_OPTS}; it must succeed. Returns stdout. */
  private static String moeVersion(String javaOpts) throws Exception {
    Path moe = Path.of(System.getProperty("moe.dist.dir", "target/moe-dist-missing")).resolve("bin/moe");
    assertTrue(Files.isExecutable(moe), "no distribution at " + moe + "; run mvn package first");
    ProcessBuilder pb = new ProcessBuilder(moe.toString(), "version").redirectErrorStream(true);
    pb.environment().put("JAVA_HOME", System.getProperty("java.home"));
    pb.environment().put("MOE_JAVA_OPTS", javaOpts);
    Process p = pb.start();
    try {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertTrue(p.waitFor(60, TimeUnit.SECONDS), "moe version did not finish");
      assertEquals(0, p.exitValue(), out);
      return out;
    } finally {
      p.destroyForcibly();
    }
  }

  /** The value of a numeric flag in {@code -XX:+PrintFlagsFinal} output. */
  private static long flag(String flagsFinal, String name) {
    Matcher m = Pattern.compile("\\s" + name + "\\s+=\\s+(\\d+)").matcher(flagsFinal);
    assertTrue(m.find(), name + " not in the output");
    return Long.parseLong(m.group(1));
  }
}
