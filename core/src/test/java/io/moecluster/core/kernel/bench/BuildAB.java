package io.moecluster.core.kernel.bench;

import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Paired A/B of two builds of the kernels in one JVM, for a machine whose load changes faster than
 * two separate runs can be compared: each build's classes ({@code core} jar or
 * {@code core/target/classes}) get their own class loader, both load the same expert weights, and
 * short timed runs of {@link ExpertPasses} alternate between them (A then B, then B then A). The
 * result is the median of the per-pair ratios B/A, with its quartiles.
 *
 * <p>Run (n = 1: decode-shaped passes, GB/s of weights; n > 1: prefill-shaped, GFLOP/s):
 * {@code ./mvnw -q -pl core -Pjmh test-compile exec:exec -Djmh.args="ab /tmp/OLD.jar $PWD/core/target/classes 1 100 200"}
 * (relative paths are taken from {@code core/}, where the benchmark runs)
 * (arguments: class path A, class path B, input rows n, pairs, milliseconds per run).
 */
final class BuildAB {
  private BuildAB() {}

  static void main(String[] args) throws Exception {
    int n;
    int pairs;
    long millis;
    try {
      if (args.length != 5) {
        throw new IllegalArgumentException("5 arguments expected, got " + args.length);
      }
      n = Integer.parseInt(args[2]);
      pairs = Integer.parseInt(args[3]);
      millis = Long.parseLong(args[4]);
      if (n < 1 || pairs < 1 || millis < 1) {
        throw new IllegalArgumentException("N, PAIRS and MILLIS must be positive");
      }
    } catch (IllegalArgumentException e) { // NumberFormatException included
      System.err.println("ab: " + e.getMessage() + "\nusage: ab CLASSPATH_A CLASSPATH_B N PAIRS MILLIS");
      System.exit(2);
      return;
    }
    URL self = BuildAB.class.getProtectionDomain().getCodeSource().getLocation();
    Method[] runs = new Method[2];
    for (int v = 0; v < 2; v++) {
      List<URL> urls = new ArrayList<>(List.of(self));
      for (String p : args[v].split(java.io.File.pathSeparator)) {
        urls.add(Path.of(p).toUri().toURL());
      }
      // The platform loader as parent: each build's kernel and tensor classes stay its own.
      ClassLoader loader = new URLClassLoader(urls.toArray(URL[]::new), ClassLoader.getPlatformClassLoader());
      Class<?> passes;
      try {
        passes = loader.loadClass(ExpertPasses.class.getName());
        loader.loadClass("io.moecluster.core.kernel.VectorKernels");
      } catch (ClassNotFoundException e) {
        System.err.println("ab: no kernels build in " + args[v] + " (a core jar or core/target/classes)");
        System.exit(2);
        return;
      }
      passes.getMethod("init", long.class).invoke(null, 1L);
      runs[v] = passes.getMethod("run", int.class, long.class);
    }
    for (int w = 0; w < 8; w++) { // C2 compiles both builds' kernels before timing
      runs[0].invoke(null, n, 500L);
      runs[1].invoke(null, n, 500L);
    }
    List<Double> a = new ArrayList<>();
    List<Double> b = new ArrayList<>();
    List<Double> ratio = new ArrayList<>();
    for (int p = 0; p < pairs; p++) {
      double x;
      double y;
      if (p % 2 == 0) {
        x = (double) runs[0].invoke(null, n, millis);
        y = (double) runs[1].invoke(null, n, millis);
      } else {
        y = (double) runs[1].invoke(null, n, millis);
        x = (double) runs[0].invoke(null, n, millis);
      }
      a.add(x);
      b.add(y);
      ratio.add(y / x);
    }
    Collections.sort(a);
    Collections.sort(b);
    Collections.sort(ratio);
    System.out.printf("n=%d, %d pairs: A median %.2f, B median %.2f %s; B/A median %.3f (quartiles %.3f..%.3f)%n",
        n, pairs, a.get(pairs / 2), b.get(pairs / 2), n == 1 ? "GB/s" : "GFLOP/s", ratio.get(pairs / 2),
        ratio.get(pairs / 4), ratio.get(3 * pairs / 4));
    System.exit(0);
  }
}
