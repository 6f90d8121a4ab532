/**
 * The API reference page: Swagger UI from the package, fed the OpenAPI document fetched with the
 * token the reader pastes (kept in sessionStorage, never in a URL). No inline script: the CSP
 * allows only this origin's files.
 */
export const DOCS_PAGE = {
  csp: "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'",
  html: `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Conveyor API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<form id="signin" style="font-family: sans-serif; padding: 1em; display: none">
  <label>Token <input id="token" type="password" autocomplete="off" size="60"></label>
  <button type="submit">Show the API</button>
  <span id="problem" role="alert"></span>
</form>
<div id="ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs.js"></script>
</body>
</html>
`,
  script: `(function () {
  var form = document.getElementById('signin')
  function show(token) {
    fetch('/openapi.json', { headers: token ? { Authorization: 'Bearer ' + token } : {} })
      .then(function (response) {
        if (response.status === 401) throw new Error('that token is not valid here')
        if (!response.ok) throw new Error('the gateway answered ' + response.status)
        return response.json()
      })
      .then(function (spec) {
        if (token) sessionStorage.setItem('conveyor.token', token)
        form.style.display = 'none'
        var ui = SwaggerUIBundle({ spec: spec, dom_id: '#ui', deepLinking: true })
        if (token) ui.preauthorizeApiKey('bearer', token)
      })
      .catch(function (error) {
        form.style.display = 'block'
        document.getElementById('problem').textContent = token ? error.message : ''
      })
  }
  form.addEventListener('submit', function (event) {
    event.preventDefault()
    show(document.getElementById('token').value.trim())
  })
  show(sessionStorage.getItem('conveyor.token') || '')
})()
`,
} as const
