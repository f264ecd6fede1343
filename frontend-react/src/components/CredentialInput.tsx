import type { Credential } from '../sse/tickets';

export interface CredentialDraft {
  kind: 'apiKey' | 'bearer';
  secret: string;
}

export function toCredential(draft: CredentialDraft): Credential | null {
  const secret = draft.secret.trim();
  if (!secret) return null;
  return draft.kind === 'bearer' ? { bearer: secret } : { apiKey: secret };
}

export interface CredentialInputProps {
  idPrefix: string;
  legend: string;
  hint?: string;
  value: CredentialDraft;
  onChange: (value: CredentialDraft) => void;
  /** Offer the API key only (the admin endpoints take keys and admin tokens alike, but say "key"). */
  required?: boolean;
}

/** An API key or a bearer token: which kind, and the secret (never stored, never put in a URL). */
export function CredentialInput({ idPrefix, legend, hint, value, onChange, required }: CredentialInputProps) {
  return (
    <fieldset className="credential">
      <legend>{legend}</legend>
      <div className="radios">
        <label className="check">
          <input
            type="radio"
            name={`${idPrefix}-kind`}
            value="apiKey"
            checked={value.kind === 'apiKey'}
            onChange={() => onChange({ ...value, kind: 'apiKey' })}
          />
          API key (X-API-Key)
        </label>
        <label className="check">
          <input
            type="radio"
            name={`${idPrefix}-kind`}
            value="bearer"
            checked={value.kind === 'bearer'}
            onChange={() => onChange({ ...value, kind: 'bearer' })}
          />
          Token (Authorization: Bearer)
        </label>
      </div>
      <label htmlFor={`${idPrefix}-secret`}>{value.kind === 'bearer' ? 'Token' : 'API key'}</label>
      <input
        id={`${idPrefix}-secret`}
        type="password"
        value={value.secret}
        onChange={(e) => onChange({ ...value, secret: e.target.value })}
        autoComplete="off"
        spellCheck={false}
        required={required}
        aria-describedby={hint ? `${idPrefix}-hint` : undefined}
      />
      {hint && (
        <p id={`${idPrefix}-hint`} className="hint">
          {hint}
        </p>
      )}
    </fieldset>
  );
}
