// The web page: log in with an API token, read the role from GET /v1/whoami, show that role's page.

import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { ApiError, get, token } from "./api.js";
import { AdminPage, FinancePage, PipelinePage } from "./pages.jsx";

const PAGES = {
  financial_director: { title: "Financial Director", Page: FinancePage },
  pipeline_td: { title: "Pipeline TD", Page: PipelinePage },
  admin: { title: "Admin", Page: AdminPage },
};

function Login({ onToken, error }) {
  const [value, setValue] = useState("");
  const submit = (event) => {
    event.preventDefault();
    if (value.trim()) onToken(value.trim());
  };
  return (
    <form className="login section" onSubmit={submit}>
      <h2>AI telemetry: log in</h2>
      <p>Paste your API token (<code>tlm_…</code>, from <code>python -m services.api.tokens issue</code>) or a JWT of
        the identity provider. It is kept in this tab only (sessionStorage) and sent as
        <code> Authorization: Bearer</code> to the API.</p>
      <input type="password" name="token" autoComplete="off" placeholder="tlm_…" value={value}
             onChange={(e) => setValue(e.target.value)} />
      <button type="submit">Log in</button>
      {error && <p className="error" data-status="login-error">{error}</p>}
    </form>
  );
}

function App() {
  const [who, setWho] = useState(null);
  const [error, setError] = useState(null);
  const [checking, setChecking] = useState(Boolean(token.get()));

  const check = () => {
    setChecking(true);
    get("/v1/whoami").then(({ data }) => { setWho(data); setError(null); }, (e) => {
      if (e instanceof ApiError && e.status === 401) token.clear();
      setError(e.message);
    }).finally(() => setChecking(false));
  };
  useEffect(() => { if (token.get()) check(); }, []);

  const logout = () => { token.clear(); setWho(null); setError(null); };
  if (checking) return <p className="login muted">Checking the token…</p>;
  if (!who) return <Login error={error} onToken={(value) => { token.set(value); check(); }} />;
  const page = PAGES[who.role];
  return (
    <div>
      <header>
        <h1>AI telemetry · {page ? page.title : who.role}</h1>
        <span data-who={who.role}>{who.principal}</span>
        <button onClick={logout}>Log out</button>
      </header>
      <main>
        {page ? <page.Page who={who} /> : (
          <p>There is no page for the role <code>{who.role}</code> yet; it may read {who.metrics.join(", ")} through
            the API (<a href="/docs">/docs</a>).</p>
        )}
      </main>
    </div>
  );
}

createRoot(document.getElementById("root")).render(<App />);
