import globals from 'globals'
import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'node_modules/**', 'test-artifacts/**', '.scratch/**', '.readme-snippet-*/**'] }),
  {
    // The example dashboard runs in the browser.
    files: ['examples/dashboard/**/*.js'],
    languageOptions: { globals: globals.browser },
    rules: { 'new-cap': ['error', { newIsCapExceptions: ['uPlot'] }] }
  }
]
