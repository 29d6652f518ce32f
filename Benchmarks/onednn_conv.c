// oneDNN's convolutions on the seed model's Conv1D layers, for issue 33's question "oneDNN or our own kernels":
// each layer's forward (training), input gradient and kernel gradient at batch 64, in fp32 and in bf16 (bfloat16
// operands, float results, as sertrain's bf16 kernels and Keras's mixed_bfloat16 compute), timed as the median of
// `repeats` runs after a warm-up. A Conv1D is oneDNN's 2-D convolution with height 1; layouts are oneDNN's choice
// (`any`) and the reorders into them are not timed (an integration would keep activations in them across layers,
// or pay the reorders). Prints one line per layer and pass, with the implementation oneDNN chose.
//
// Build and run (Benchmarks/onednn.sh does both): cc -O2 onednn_conv.c -ldnnl -lm -o onednn_conv &&
// OMP_NUM_THREADS=2 ./onednn_conv [repeats] [any|nlc]
#include <dnnl.h>
#include <dnnl_debug.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                          \
  do {                                                                                       \
    dnnl_status_t s_ = (call);                                                               \
    if (s_ != dnnl_success) {                                                                \
      fprintf(stderr, "onednn_conv: %s failed: %s (line %d)\n", #call, dnnl_status2str(s_), \
              __LINE__);                                                                     \
      exit(1);                                                                               \
    }                                                                                        \
  } while (0)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static uint32_t rng = 12345;
static float uniform(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)(rng >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

// A memory of `md` filled with values in [-1, 1] (bfloat16: the float's upper half).
static dnnl_memory_t filled(const dnnl_memory_desc_t *md, dnnl_engine_t engine) {
  dnnl_memory_t m;
  CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_ALLOCATE));
  void *p;
  CHECK(dnnl_memory_get_data_handle(m, &p));
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (md->data_type == dnnl_bf16) {
    uint16_t *q = p;
    for (size_t i = 0; i < bytes / 2; i++) {
      float f = uniform();
      uint32_t u;
      memcpy(&u, &f, 4);
      q[i] = (uint16_t)(u >> 16);
    }
  } else {
    float *q = p;
    for (size_t i = 0; i < bytes / 4; i++) q[i] = uniform();
  }
  return m;
}

static double timed(dnnl_primitive_t prim, dnnl_stream_t stream, int nargs, const dnnl_exec_arg_t *args,
                    int repeats) {
  CHECK(dnnl_primitive_execute(prim, stream, nargs, args));
  CHECK(dnnl_stream_wait(stream));
  double times[64];
  for (int r = 0; r < repeats; r++) {
    double t0 = now();
    CHECK(dnnl_primitive_execute(prim, stream, nargs, args));
    CHECK(dnnl_stream_wait(stream));
    times[r] = now() - t0;
  }
  qsort(times, (size_t)repeats, sizeof(double), compare);
  return times[repeats / 2];
}

static const char *impl(const_dnnl_primitive_desc_t pd) {
  const char *s = NULL;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s);
  return s ? s : "?";
}

int main(int argc, char **argv) {
  int repeats = argc > 1 ? atoi(argv[1]) : 5;
  if (repeats < 1 || repeats > 64) repeats = 5;
  // Activations in oneDNN's choice of layout (blocked), or in sertrain's (`nlc`: batch, length, channels; nhwc
  // with height 1), which an integration without reorders would need.
  dnnl_format_tag_t activations = argc > 2 && strcmp(argv[2], "nlc") == 0 ? dnnl_nhwc : dnnl_format_tag_any;
  // The seed model's Conv1D layers past the stem: input channels, output channels, taps, length; batch 64.
  const int layers[4][4] = {{512, 512, 5, 1188}, {512, 256, 5, 594}, {256, 256, 3, 297}, {256, 128, 3, 149}};
  const int n = 64;
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
  CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
  printf("precision layer cin cout taps length pass seconds GFLOP/s implementation\n");
  for (int precision = 0; precision < 2; precision++) {
    dnnl_data_type_t in = precision ? dnnl_bf16 : dnnl_f32;
    const char *name = precision ? "bf16" : "fp32";
    double totals[3] = {0, 0, 0};
    for (int l = 0; l < 4; l++) {
      int cin = layers[l][0], cout = layers[l][1], k = layers[l][2], len = layers[l][3];
      dnnl_dims_t src_dims = {n, cin, 1, len}, wei_dims = {cout, cin, 1, k}, dst_dims = {n, cout, 1, len};
      dnnl_dims_t strides = {1, 1}, pad_l = {0, k / 2}, pad_r = {0, k / 2};
      dnnl_memory_desc_t src_in, src_out, wei_in, wei_out, dst_in, dst_out;
      CHECK(dnnl_memory_desc_init_by_tag(&src_in, 4, src_dims, in, activations));
      CHECK(dnnl_memory_desc_init_by_tag(&src_out, 4, src_dims, dnnl_f32, activations));
      CHECK(dnnl_memory_desc_init_by_tag(&wei_in, 4, wei_dims, in, dnnl_format_tag_any));
      CHECK(dnnl_memory_desc_init_by_tag(&wei_out, 4, wei_dims, dnnl_f32, dnnl_format_tag_any));
      CHECK(dnnl_memory_desc_init_by_tag(&dst_in, 4, dst_dims, in, activations));
      CHECK(dnnl_memory_desc_init_by_tag(&dst_out, 4, dst_dims, dnnl_f32, activations));

      // Forward: bf16 (or float) input and kernel, float output.
      dnnl_convolution_desc_t fd, bd, wd;
      CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src_in, &wei_in,
                                               NULL, &dst_out, strides, pad_l, pad_r));
      dnnl_primitive_desc_t fpd, bpd, wpd;
      CHECK(dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL));
      // The input gradient: the output gradient and the kernel in, a float input gradient out.
      CHECK(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &src_out, &wei_in, &dst_in, strides,
                                                     pad_l, pad_r));
      CHECK(dnnl_primitive_desc_create(&bpd, &bd, NULL, engine, fpd));
      // The kernel gradient: the input and the output gradient in, a float kernel gradient out.
      CHECK(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &src_in, &wei_out, NULL, &dst_in,
                                                        strides, pad_l, pad_r));
      CHECK(dnnl_primitive_desc_create(&wpd, &wd, NULL, engine, fpd));

      const_dnnl_primitive_desc_t pds[3] = {fpd, bpd, wpd};
      const char *passes[3] = {"forward", "input-gradient", "kernel-gradient"};
      // Each pass's arguments, in the layouts its primitive asked for.
      int args_of[3][3] = {{DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                           {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
                           {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS}};
      dnnl_query_t queries[3][3] = {{dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md},
                                    {dnnl_query_diff_dst_md, dnnl_query_weights_md, dnnl_query_diff_src_md},
                                    {dnnl_query_src_md, dnnl_query_diff_dst_md, dnnl_query_diff_weights_md}};
      double flop = 2.0 * n * len * (double)cin * cout * k;
      for (int p = 0; p < 3; p++) {
        dnnl_primitive_t prim;
        CHECK(dnnl_primitive_create(&prim, pds[p]));
        dnnl_memory_t mems[3];
        dnnl_exec_arg_t args[3];
        for (int a = 0; a < 3; a++) {
          mems[a] = filled(dnnl_primitive_desc_query_md(pds[p], queries[p][a], 0), engine);
          args[a].arg = args_of[p][a];
          args[a].memory = mems[a];
        }
        double s = timed(prim, stream, 3, args, repeats);
        totals[p] += s;
        printf("%s conv%d %d %d %d %d %s %.4f %.1f %s\n", name, l + 2, cin, cout, k, len, passes[p], s, flop / s * 1e-9,
               impl(pds[p]));
        for (int a = 0; a < 3; a++) dnnl_memory_destroy(mems[a]);
        dnnl_primitive_destroy(prim);
      }
      dnnl_primitive_desc_destroy(fpd);
      dnnl_primitive_desc_destroy(bpd);
      dnnl_primitive_desc_destroy(wpd);
    }
    printf("%s total forward %.4f s, input-gradient %.4f s, kernel-gradient %.4f s, all %.4f s\n", name, totals[0],
           totals[1], totals[2], totals[0] + totals[1] + totals[2]);
  }
  dnnl_stream_destroy(stream);
  dnnl_engine_destroy(engine);
  return 0;
}
