/* One optimizer step of Keras 3's rules over w[lo:hi]: a body compiled once per variant and
 * precision (simd/variant.h sets FLOAT_T, float or double, and TYPED(name), the name suffixed by
 * both), so that the compiler's own vector loops take the variant's widest registers (8 floats
 * a vector under AVX2: about 1.5x faster than 4).
 *
 * Scalars are rounded to the parameter precision first, as Keras does in float32; 1 - beta is
 * formed in double, as Python does before Keras casts it. */

/* IN/OUT the moments m += (g - m)·a and v += (g² - v)·b of Adam and Nadam. */
static inline void TYPED(moments)(FLOAT_T* m, FLOAT_T* v, FLOAT_T g, FLOAT_T a, FLOAT_T b) {
    *m += (g - *m) * a;
    *v += (g * g - *v) * b;
}

/* IN/OUT w[lo:hi] and the slots s0..s2 (NULL when unused): one step of c's rule. terms: the
 * step's scalars (STEP_TERMS, the kernels' _step_terms). */
static void TYPED(update)(const OptConfig* c, const double* terms, FLOAT_T* w, const FLOAT_T* g,
                           FLOAT_T* s0, FLOAT_T* s1, FLOAT_T* s2, ptrdiff_t lo, ptrdiff_t hi) {
    const FLOAT_T alpha = (FLOAT_T)terms[0];
    const FLOAT_T lr = (FLOAT_T)c->learning_rate, mom = (FLOAT_T)c->momentum;
    const FLOAT_T eps = (FLOAT_T)c->epsilon, rho = (FLOAT_T)c->rho;
    const FLOAT_T one_minus_rho = (FLOAT_T)(1 - c->rho);
    const FLOAT_T one_minus_b1 = (FLOAT_T)(1 - c->beta_1);
    const FLOAT_T one_minus_b2 = (FLOAT_T)(1 - c->beta_2);
    ptrdiff_t i;
    if (c->kind == OPT_SGD) {
        if (s0 == NULL) {
            for (i = lo; i < hi; i++)
                w[i] -= lr * g[i];
        } else {
            /* nesterov: w += mom·v - lr·g ; classic: w += v  (a, b select the form) */
            const FLOAT_T a = c->nesterov ? mom : 1, b = c->nesterov ? lr : 0;
            for (i = lo; i < hi; i++) {
                FLOAT_T v = mom * s0[i] - lr * g[i];
                s0[i] = v;
                w[i] += a * v - b * g[i];
            }
        }
    } else if (c->kind == OPT_ADAGRAD) {
        for (i = lo; i < hi; i++) {
            s0[i] += g[i] * g[i];
            w[i] -= lr * g[i] / FLOAT_SQRT(s0[i] + eps);
        }
    } else if (c->kind == OPT_RMSPROP) {
        /* s0 velocity, s1 momentum buffer (momentum > 0), s2 average gradient (centered) */
        for (i = lo; i < hi; i++) {
            FLOAT_T d, u;
            s0[i] = rho * s0[i] + one_minus_rho * (g[i] * g[i]);
            if (c->centered) {
                s2[i] = rho * s2[i] + one_minus_rho * g[i];
                d = s0[i] - s2[i] * s2[i] + eps;
            } else {
                d = s0[i] + eps;
            }
            u = lr * g[i] / FLOAT_SQRT(d);
            if (s1 != NULL) {
                s1[i] = mom * s1[i] + u;
                w[i] -= s1[i];
            } else {
                w[i] -= u;
            }
        }
    } else if (c->kind == OPT_ADAM) {
#if ADAM_RECIPROCAL
        if (!c->amsgrad && eps > 0) {  /* the divider bounds the exact loop */
            SIMD(adam_f32)(w, g, s0, s1, lo, hi, alpha, one_minus_b1, one_minus_b2, eps);
            return;
        }
#endif
        /* s0 first moment m, s1 second moment v, s2 max of v (amsgrad) */
        for (i = lo; i < hi; i++) {
            TYPED(moments)(s0 + i, s1 + i, g[i], one_minus_b1, one_minus_b2);
            if (c->amsgrad) {
                s2[i] = s2[i] > s1[i] ? s2[i] : s1[i];
                w[i] -= (s0[i] * alpha) / (FLOAT_SQRT(s2[i]) + eps);
            } else {
                w[i] -= (s0[i] * alpha) / (FLOAT_SQRT(s1[i]) + eps);
            }
        }
    } else if (c->kind == OPT_NADAM) {
        /* s0 m, s1 v; Keras forms 1 - beta in the parameter precision here. terms: u_{t+1},
         * 1 - u_t, 1 - (u_1...u_t), 1 - (u_1...u_{t+1}), 1 - beta_2^t */
        const FLOAT_T b1 = (FLOAT_T)c->beta_1, b2 = (FLOAT_T)c->beta_2;
        const FLOAT_T u_next = (FLOAT_T)terms[0], one_minus_u = (FLOAT_T)terms[1];
        const FLOAT_T debias = (FLOAT_T)terms[2], debias_next = (FLOAT_T)terms[3];
        const FLOAT_T bias_2 = (FLOAT_T)terms[4];
        for (i = lo; i < hi; i++) {
            FLOAT_T m_hat;
            TYPED(moments)(s0 + i, s1 + i, g[i], 1 - b1, 1 - b2);
            m_hat = u_next * s0[i] / debias_next + one_minus_u * g[i] / debias;
            w[i] -= m_hat * lr / (FLOAT_SQRT(s1[i] / bias_2) + eps);
        }
    } else if (c->kind == OPT_ADAMAX) {
        /* s0 m, s1 u (the infinity norm); alpha is 1 - beta_1^t */
        const FLOAT_T b2 = (FLOAT_T)c->beta_2;
        for (i = lo; i < hi; i++) {
            FLOAT_T norm = b2 * s1[i], size = g[i] < 0 ? -g[i] : g[i];
            s0[i] += (g[i] - s0[i]) * one_minus_b1;
            s1[i] = norm > size ? norm : size;
            w[i] -= lr * s0[i] / (alpha * (s1[i] + eps));
        }
    }
}
