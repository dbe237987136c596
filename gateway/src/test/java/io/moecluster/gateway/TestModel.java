package io.moecluster.gateway;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** A TINY checkpoint written once per test JVM, removed when the JVM exits. */
final class TestModel {
  private static Path dir;

  private TestModel() {}

  static synchronized Path tiny() {
    if (dir == null) {
      try {
        Path root = Files.createTempDirectory("moe-gateway-tests");
        dir = root.resolve("tiny");
        CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), dir);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(root)));
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    }
    return dir;
  }

  private static void deleteTree(Path root) {
    try (Stream<Path> paths = Files.walk(root)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException e) {
      // best effort at exit
    }
  }
}
