package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class CudaProbeTest {

  @Test
  void aMissingDriverIsOneLineThatNamesLibcuda() {
    var e = new UnsatisfiedLinkError("""
        Error while loading native library "JCudaDriver-12.6.0-linux-x86_64"
        Operating system name: Linux
        ---(start of nested stack traces)---
        java.lang.UnsatisfiedLinkError: /tmp/libJCudaDriver-12.6.0-linux-x86_64.so: libcuda.so.1: cannot open shared object file: No such file or directory
        ---(end of nested stack traces)---
        """);
    assertEquals("no NVIDIA driver (libcuda.so.1: cannot open shared object file: No such file or directory)",
        CudaProbe.linkProblem(e));
    assertEquals("the CUDA driver binding (JCuda) could not be loaded: NoClassDefFoundError: jcuda/driver/JCudaDriver",
        CudaProbe.linkProblem(new NoClassDefFoundError("jcuda/driver/JCudaDriver\nmore")));
  }

  @Test
  void theProbeOnThisMachineAnswersOnceAndInOneLine() {
    CudaProbe.Result r = CudaProbe.probe();
    assertSame(r, CudaProbe.probe());
    if (r.available()) {
      assertTrue(r.problem() == null);
    } else {
      assertFalse(r.problem().contains("\n"), r.problem());
      assertTrue(r.devices().isEmpty());
    }
  }

  @Test
  void driverVersions() {
    assertEquals("12.0", CudaProbe.versionText(CudaProbe.MIN_DRIVER_VERSION));
    assertEquals("13.0", CudaProbe.versionText(13000));
    assertEquals("12.6", CudaProbe.versionText(12060));
  }
}
