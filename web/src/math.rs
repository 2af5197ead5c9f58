//! The explorer's formulas as MathML (rendered natively by the browser; no scripts, no fonts).

/// The tilted policy, its KL, the win rates and the transforms.
pub const FORMULAS: &str = r#"
<p>The policy aligned with transform Φ and λ = 1/β, as a density of the calibrated reward u:</p>
<math display="block">
  <mi>p</mi><mo stretchy="false">(</mo><mi>u</mi><mo stretchy="false">)</mo><mo>=</mo>
  <mfrac><msup><mi>e</mi><mrow><mi>λ</mi><mi>Φ</mi><mo stretchy="false">(</mo><mi>u</mi><mo stretchy="false">)</mo></mrow></msup><mi>Z</mi></mfrac>
  <mo>,</mo><mspace width="1em"/>
  <mi>Z</mi><mo>=</mo><msubsup><mo>∫</mo><mn>0</mn><mn>1</mn></msubsup>
  <msup><mi>e</mi><mrow><mi>λ</mi><mi>Φ</mi><mo stretchy="false">(</mo><mi>v</mi><mo stretchy="false">)</mo></mrow></msup><mi>d</mi><mi>v</mi>
  <mo>,</mo><mspace width="1em"/>
  <mi>KL</mi><mo>=</mo><mi>λ</mi><msub><mi>𝔼</mi><mi>p</mi></msub><mo stretchy="false">[</mo><mi>Φ</mi><mo stretchy="false">]</mo><mo>−</mo><mi>log</mi><mi>Z</mi>
</math>
<p>With F the CDF of p, Best-of-N and Worst-of-N serve the densities
  <math><mi>N</mi><msup><mi>F</mi><mrow><mi>N</mi><mo>−</mo><mn>1</mn></mrow></msup><mi>p</mi></math> and
  <math><mi>N</mi><msup><mrow><mo stretchy="false">(</mo><mn>1</mn><mo>−</mo><mi>F</mi><mo stretchy="false">)</mo></mrow><mrow><mi>N</mi><mo>−</mo><mn>1</mn></mrow></msup><mi>p</mi></math>,
  and win against the same procedure on the reference with probability</p>
<math display="block">
  <msub><mi>W</mi><msub><mi>BoN</mi><mi>N</mi></msub></msub><mo>=</mo><mn>1</mn><mo>−</mo><mi>N</mi>
  <msubsup><mo>∫</mo><mn>0</mn><mn>1</mn></msubsup>
  <mi>F</mi><msup><mrow><mo stretchy="false">(</mo><mi>u</mi><mo stretchy="false">)</mo></mrow><mi>N</mi></msup>
  <msup><mi>u</mi><mrow><mi>N</mi><mo>−</mo><mn>1</mn></mrow></msup><mi>d</mi><mi>u</mi>
  <mo>,</mo><mspace width="1em"/>
  <msub><mi>W</mi><msub><mi>WoN</mi><mi>N</mi></msub></msub><mo>=</mo><mi>N</mi>
  <msubsup><mo>∫</mo><mn>0</mn><mn>1</mn></msubsup>
  <msup><mrow><mo stretchy="false">(</mo><mn>1</mn><mo>−</mo><mi>F</mi><mo stretchy="false">(</mo><mi>u</mi><mo stretchy="false">)</mo><mo stretchy="false">)</mo></mrow><mi>N</mi></msup>
  <msup><mrow><mo stretchy="false">(</mo><mn>1</mn><mo>−</mo><mi>u</mi><mo stretchy="false">)</mo></mrow><mrow><mi>N</mi><mo>−</mo><mn>1</mn></mrow></msup><mi>d</mi><mi>u</mi>
</math>
<p>The transforms (exp and negexp are drawn rescaled to [0, 1], which changes β, not the policies):</p>
<math display="block">
  <msub><mi>Φ</mi><mi>identity</mi></msub><mo>=</mo><mi>u</mi><mo>,</mo><mspace width="1em"/>
  <msub><mi>Φ</mi><mi>log</mi></msub><mo>=</mo><mi>log</mi><mi>u</mi><mo>,</mo><mspace width="1em"/>
  <msub><mi>Φ</mi><mi>exp</mi></msub><mo>=</mo><msup><mi>e</mi><mrow><mi>t</mi><mi>u</mi></mrow></msup><mo>,</mo><mspace width="1em"/>
  <msub><mi>Φ</mi><mi>negexp</mi></msub><mo>=</mo><mo>−</mo><msup><mi>e</mi><mrow><mo>−</mo><mi>t</mi><mi>u</mi></mrow></msup>
</math>
<p>The optimal transforms solve the stationarity condition of the BoN<sub>N</sub> (or WoN<sub>N</sub>)
  win rate at fixed KL numerically; log at λ = N − 1 is exactly BoN<sub>N</sub> of the reference.</p>
"#;
