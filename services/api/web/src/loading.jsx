// An answer being read: "Loading…", the API's refusal as it came, or the value handed to the children.

import { useEffect, useState } from "react";

/** The state of load() (a promise), read again whenever key changes. */
export function useLoad(load, key) {
  const [state, setState] = useState({ loading: true });
  useEffect(() => {
    setState({ loading: true });
    load().then((value) => setState({ value }), (error) => setState({ error }));
  }, [key]);
  return state;
}

export function Loaded({ state, children }) {
  if (state.loading) return <p className="muted">Loading…</p>;
  if (state.error) return <p className="error">{state.error.message}</p>;
  return children(state.value);
}
